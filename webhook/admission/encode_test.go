package admission

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// awkward are strings encoding/json writes with escapes: HTML characters, quotes, control
// characters, U+2028, invalid UTF-8.
var awkward = []string{"", "nginx:1.27", `a"b\c`, "<&>", "tab\there", "\u2028\u2029", "\xff\xfe", "é✓", "\x00\x1f"}

// TestTheAuditAnnotationIsEncodingJSONs checks that the audit annotation, written directly,
// is what encoding/json writes for the same list.
func TestTheAuditAnnotationIsEncodingJSONs(t *testing.T) {
	if n := reflect.TypeFor[rewrite.Decision]().NumField(); n != 6 {
		t.Fatalf("rewrite.Decision has %d fields; appendDecision writes 6", n)
	}
	var changed []change
	for i, s := range awkward {
		changed = append(changed, change{Decision: rewrite.Decision{Container: s, ContainerType: rewrite.ContainerType(s),
			Original: s, Rewritten: awkward[(i+1)%len(awkward)], Reason: rewrite.Reason(s), Detail: awkward[(i+2)%len(awkward)]}})
	}
	for _, max := range []int{0, 1, 3, len(changed), 100} {
		for _, n := range []int{0, 1, 4, len(changed)} {
			h := &Handler{limits: DefaultLimits()}
			h.limits.MaxListedDecisions = max
			list := []any{}
			for i, c := range changed[:n] {
				if i == max {
					list = append(list, map[string]int{"omitted": n - i})
					break
				}
				list = append(list, c.Decision)
			}
			want, err := json.Marshal(list)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.auditValue(changed[:n]); got != string(want) {
				t.Errorf("max %d, %d changes:\n got %s\nwant %s", max, n, got, want)
			}
		}
	}
}

// TestTheOriginalImagesAreEncodingJSONs checks the merged annotation against encoding/json's
// encoding of the same map, and that an existing value of null is replaced by the originals.
func TestTheOriginalImagesAreEncodingJSONs(t *testing.T) {
	originals := map[string]string{}
	for i, s := range awkward {
		originals[s] = awkward[(i+3)%len(awkward)]
	}
	for _, existing := range []string{"", "null", "{}", `{"old":"busybox","<&>":"x"}`, "not json", `{"a":1}`} {
		got, _ := mergeOriginals(existing, originals)
		merged := map[string]string{}
		_ = json.Unmarshal([]byte(existing), &merged)
		if merged == nil {
			merged = map[string]string{}
		}
		if existing == "not json" || existing == `{"a":1}` {
			merged = map[string]string{}
		}
		for k, v := range originals {
			merged[k] = v
		}
		want, err := json.Marshal(merged)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("existing %q:\n got %s\nwant %s", existing, got, want)
		}
	}
}
