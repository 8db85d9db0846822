package admission

import (
	"bytes"
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
)

// maxLeanDepth is the deepest nesting leanDecode reads; deeper input goes to encoding/json
// (whose own limit is 10,000). A Pod the API server sends nests about 15 deep, in its
// managed fields.
const maxLeanDepth = 100

// leanDecode reads the podView of a Pod's JSON in one pass and without reflection, checking
// and skipping everything the webhook does not read. encoding/json reads the same document
// twice (once to check it, once to decode it) and was a quarter of the handler's work on a
// 5 KB Pod.
//
// It reads JSON as the API server writes it. For anything else it returns false and
// decodePod decodes with encoding/json as before, so that the two agree on every input
// (FuzzLeanDecode checks it): invalid JSON, a field the webhook reads written in another case
// or with escapes (encoding/json matches those too), a field given twice, a value of another
// type where the webhook reads one, nesting deeper than maxLeanDepth. A null leaves the
// field empty, as in encoding/json.
func leanDecode(b []byte) (*podView, bool) {
	s := leanScanner{b: b}
	s.space()
	if !s.at('{') {
		return nil, false
	}
	var pod podView
	var seen fieldSet
	ok := s.object(0, func(key []byte, plain bool) bool {
		f, ok := seen.match(key, plain, "kind", "metadata", "spec")
		if !ok {
			return false
		}
		s.space()
		switch f {
		case 0:
			pod.Kind, ok = s.stringValue()
			return ok
		case 1:
			return s.metadata(&pod)
		case 2:
			return s.spec(&pod)
		}
		return s.skip(1)
	})
	s.space()
	if !ok || s.i != len(b) {
		return nil, false
	}
	pod.derive()
	return &pod, true
}

// leanScanner reads b from offset i.
type leanScanner struct {
	b []byte
	i int
}

// fieldSet is the fields of one JSON object already read, to turn a repeated one away.
type fieldSet uint8

// match returns the index of the name key (as str returns it) is, or -1 for a field the
// webhook does not read. It returns false for a key that is not plain ASCII without escapes
// and could be one of names to encoding/json (which unescapes keys and matches them
// case-insensitively), and for a field already read.
func (f *fieldSet) match(key []byte, plain bool, names ...string) (int, bool) {
	key = key[1 : len(key)-1]
	if !plain && bytes.IndexByte(key, '\\') >= 0 {
		return -1, false
	}
	for i, n := range names {
		if string(key) == n {
			if *f&(1<<i) != 0 {
				return -1, false
			}
			*f |= 1 << i
			return i, true
		}
	}
	for _, n := range names {
		// Folding keeps the length of ASCII; other keys may fold to a name of another length.
		if (!plain || len(key) == len(n)) && bytes.EqualFold(key, []byte(n)) {
			return -1, false
		}
	}
	return -1, true
}

func (s *leanScanner) at(c byte) bool { return s.i < len(s.b) && s.b[s.i] == c }

// space skips JSON whitespace.
func (s *leanScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// plainByte says which bytes stand for themselves in a JSON string: ASCII except control
// characters, the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads a string and returns its raw bytes, quotes included, and whether they are plain:
// ASCII without escapes, so that the bytes between the quotes are the string.
func (s *leanScanner) str() (raw []byte, plain, ok bool) {
	if !s.at('"') {
		return nil, false, false
	}
	start := s.i
	plain = true
	b := s.b
	for i := start + 1; ; {
		for i < len(b) && plainByte[b[i]] {
			i++
		}
		if i >= len(b) {
			return nil, false, false
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return b[start:s.i], plain, true
		case c == '\\':
			plain = false
			if i+1 >= len(b) {
				return nil, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+5 >= len(b) {
					return nil, false, false
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return nil, false, false
					}
				}
				i += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default: // not ASCII
			plain = false
			i++
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// null skips a null, and reports whether there was one.
func (s *leanScanner) null() bool {
	if s.at('n') && s.literal("null") {
		return true
	}
	return false
}

// stringValue reads a string value; null is the empty string.
func (s *leanScanner) stringValue() (string, bool) {
	if s.null() {
		return "", true
	}
	raw, plain, ok := s.str()
	if !ok {
		return "", false
	}
	return unquote(raw, plain)
}

// unquote returns the string raw holds. Escapes and non-ASCII bytes (invalid UTF-8 becomes
// U+FFFD) are left to encoding/json, which reads them exactly as in the full decode.
func unquote(raw []byte, plain bool) (string, bool) {
	if plain {
		return string(raw[1 : len(raw)-1]), true
	}
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", false
	}
	return out, true
}

// object reads the object at s.i, calling member for each member after the colon, with its
// key as str returns it; member reads the value. depth is the nesting of the object's parent.
func (s *leanScanner) object(depth int, member func(key []byte, plain bool) bool) bool {
	if depth >= maxLeanDepth || !s.at('{') {
		return false
	}
	s.i++
	s.space()
	if s.at('}') {
		s.i++
		return true
	}
	for {
		s.space()
		raw, plain, ok := s.str()
		if !ok {
			return false
		}
		s.space()
		if !s.at(':') {
			return false
		}
		s.i++
		if !member(raw, plain) {
			return false
		}
		s.space()
		switch {
		case s.at(','):
			s.i++
		case s.at('}'):
			s.i++
			return true
		default:
			return false
		}
	}
}

// array reads the array at s.i, calling element for each element; element reads it.
func (s *leanScanner) array(depth int, element func() bool) bool {
	if depth >= maxLeanDepth || !s.at('[') {
		return false
	}
	s.i++
	s.space()
	if s.at(']') {
		s.i++
		return true
	}
	for {
		s.space()
		if !element() {
			return false
		}
		s.space()
		switch {
		case s.at(','):
			s.i++
		case s.at(']'):
			s.i++
			return true
		default:
			return false
		}
	}
}

// skip checks and skips one value; depth is the nesting of its parent. It keeps the open
// objects and arrays on a stack of its own rather than recursing: most of a Pod is skipped.
func (s *leanScanner) skip(depth int) bool {
	var stack [32]byte
	open := stack[:0] // '{' or '[' for each object or array being skipped
	for {
		// A value is expected.
		s.space()
		if s.i >= len(s.b) {
			return false
		}
		switch c := s.b[s.i]; c {
		case '{', '[':
			if depth+len(open) >= maxLeanDepth {
				return false
			}
			s.i++
			s.space()
			if s.at(c + 2) { // '}' is '{'+2, ']' is '['+2
				s.i++
				break
			}
			open = append(open, c)
			if c == '{' && !s.key() {
				return false
			}
			continue
		case '"':
			if _, _, ok := s.str(); !ok {
				return false
			}
		case 't':
			if !s.literal("true") {
				return false
			}
		case 'f':
			if !s.literal("false") {
				return false
			}
		case 'n':
			if !s.literal("null") {
				return false
			}
		default:
			if !s.number() {
				return false
			}
		}
		// A value ended: close what it ends, up to the next member or element.
		for {
			if len(open) == 0 {
				return true
			}
			s.space()
			top := open[len(open)-1]
			if s.at(',') {
				s.i++
				if top == '{' && !s.key() {
					return false
				}
				break
			}
			if !s.at(top + 2) {
				return false
			}
			s.i++
			open = open[:len(open)-1]
		}
	}
}

// key reads an object member's key and the colon after it.
func (s *leanScanner) key() bool {
	s.space()
	if _, _, ok := s.str(); !ok {
		return false
	}
	s.space()
	if !s.at(':') {
		return false
	}
	s.i++
	return true
}

func (s *leanScanner) literal(word string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return false
	}
	s.i += len(word)
	return true
}

// number skips a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *leanScanner) number() bool {
	if s.at('-') {
		s.i++
	}
	switch {
	case s.at('0'):
		s.i++
	case s.i < len(s.b) && '1' <= s.b[s.i] && s.b[s.i] <= '9':
		s.digits()
	default:
		return false
	}
	if s.at('.') {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if s.at('e') || s.at('E') {
		s.i++
		if s.at('+') || s.at('-') {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits skips one or more digits.
func (s *leanScanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// metadata reads the Pod's metadata: its annotations.
func (s *leanScanner) metadata(pod *podView) bool {
	if s.null() {
		return true
	}
	pod.Metadata = &podMetadata{}
	var seen fieldSet
	return s.object(1, func(key []byte, plain bool) bool {
		f, ok := seen.match(key, plain, "annotations")
		if !ok {
			return false
		}
		s.space()
		if f < 0 {
			return s.skip(2)
		}
		if s.null() {
			return true
		}
		annotations := map[string]string{}
		pod.Metadata.Annotations = annotations
		return s.object(2, func(key []byte, plain bool) bool {
			name, ok := unquote(key, plain)
			if !ok {
				return false
			}
			s.space()
			value, ok := s.stringValue()
			annotations[name] = value
			return ok
		})
	})
}

// spec reads the Pod's pull secrets and containers.
func (s *leanScanner) spec(pod *podView) bool {
	if s.null() {
		return true
	}
	var seen fieldSet
	return s.object(1, func(key []byte, plain bool) bool {
		f, ok := seen.match(key, plain, "imagePullSecrets", "containers", "initContainers", "ephemeralContainers")
		if !ok {
			return false
		}
		s.space()
		switch f {
		case 0:
			if s.null() {
				return true
			}
			pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{}
			return s.array(2, func() bool {
				var ref corev1.LocalObjectReference
				if s.null() {
					pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, ref)
					return true
				}
				var seen fieldSet
				ok := s.object(3, func(key []byte, plain bool) bool {
					f, ok := seen.match(key, plain, "name")
					if !ok {
						return false
					}
					s.space()
					if f < 0 {
						return s.skip(4)
					}
					ref.Name, ok = s.stringValue()
					return ok
				})
				pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, ref)
				return ok
			})
		case 1:
			return s.containers(&pod.Spec.Containers)
		case 2:
			return s.containers(&pod.Spec.InitContainers)
		case 3:
			return s.containers(&pod.Spec.EphemeralContainers)
		}
		return s.skip(2)
	})
}

// containers reads a list of containers: their names and images.
func (s *leanScanner) containers(list *[]containerView) bool {
	if s.null() {
		return true
	}
	*list = []containerView{}
	return s.array(2, func() bool {
		var c containerView
		if s.null() {
			*list = append(*list, c)
			return true
		}
		var seen fieldSet
		ok := s.object(3, func(key []byte, plain bool) bool {
			f, ok := seen.match(key, plain, "name", "image")
			if !ok {
				return false
			}
			s.space()
			switch f {
			case 0:
				c.Name, ok = s.stringValue()
				return ok
			case 1:
				c.Image, ok = s.stringValue()
				return ok
			}
			return s.skip(4)
		})
		*list = append(*list, c)
		return ok
	})
}
