package imageref

import (
	_ "crypto/sha256" // digests in references are checked by algorithm; register both
	_ "crypto/sha512"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
)

// ErrInvalid is wrapped by every error about a malformed reference or cache path.
var ErrInvalid = errors.New("invalid image reference")

// ErrImageID is wrapped (with ErrInvalid) when a reference is an image ID ("<64 hex>" or
// "sha256:<64 hex>"): an ID names local content, not a repository, so it has no place in a
// registry. Docker, containerd and distribution refuse it as a name; so does Parse.
var ErrImageID = errors.New("an image ID, not an image name")

// MaxNameLength is the longest a repository name (registry host and path, without tag or
// digest) may be.
const MaxNameLength = 255

// MaxReferenceLength is the longest reference Parse reads: a name of MaxNameLength, a tag of
// 128 characters (the grammar's limit) and a sha512 digest (the longest algorithm it
// accepts), with their separators. Nothing longer can be valid. The grammar is a regular
// expression whose cost grows with the input, some 5-20 µs per character (more on a busy
// machine), and a Pod can carry megabytes of image strings, so a longer input is refused
// before the grammar runs.
const MaxReferenceLength = MaxNameLength + len(":") + 128 + len("@sha512:") + 128

// The grammar is distribution's (github.com/distribution/reference, the parser containerd
// uses), anchored. pathPattern is its repository path, which the package does not export
// on its own.
var (
	hostPattern    = regexp.MustCompile(`^` + reference.DomainRegexp.String() + `$`)
	tagPattern     = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)
	pathPattern    = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	imageIDPattern = regexp.MustCompile(`^(?:sha256:)?[a-f0-9]{64}$`)
)

// Ref is an image reference split into the parts the cache mapping uses.
type Ref struct {
	// Registry is canonical: every Docker Hub alias is "docker.io".
	Registry string
	// Repository includes the implicit "library/" of Docker Hub official images.
	Repository string
	// Tag is "" when the reference names none.
	Tag string
	// Digest is "" when the reference names none.
	Digest string
}

// Name is "<registry>/<repository>", without tag or digest.
func (r Ref) Name() string { return r.Registry + "/" + r.Repository }

// String is the reference as written, "<registry>/<repository>[:tag][@digest]".
func (r Ref) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Normalized returns the reference with ":latest" added when it names neither tag nor
// digest: what a container runtime would pull.
func (r Ref) Normalized() Ref {
	if r.Tag == "" && r.Digest == "" {
		r.Tag = name.DefaultTag
	}
	return r
}

// Parse parses an image reference as a container runtime reads it: distribution's
// ParseNormalizedNamed (the first component is a registry host when IsHostComponent says
// so; Docker Hub gets "library/"; "tag@digest" keeps both). The result is a
// go-containerregistry reference, which the rest of hubcache uses for transports and
// scopes. An explicit tag is kept distinguishable from none (Parts reports Tag ""), so
// ":latest" is added only where the user wrote neither tag nor digest. An image ID is
// refused (ErrImageID), and so is anything longer than MaxReferenceLength.
func Parse(s string) (name.Reference, error) {
	if len(s) > MaxReferenceLength {
		return nil, fmt.Errorf("%w: %q… is %d characters, more than %d", ErrInvalid, s[:32], len(s), MaxReferenceLength)
	}
	if imageIDPattern.MatchString(s) {
		return nil, fmt.Errorf("%w: %w: %q is left to the runtime, which resolves IDs locally", ErrInvalid, ErrImageID, s)
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w%s", ErrInvalid, s, err, explain(s))
	}
	domain, path := reference.Domain(named), reference.Path(named)
	if !hostPattern.MatchString(domain) {
		// distribution reads a first component it cannot take as a host ("a_b.com/x") as
		// a path with no domain at all; there is no registry to pull that from.
		return nil, fmt.Errorf("%w: %q: %q is not a valid registry host", ErrInvalid, s, strings.Split(s, "/")[0])
	}
	if n := len(domain) + 1 + len(path); n > MaxNameLength {
		return nil, fmt.Errorf("%w: name is %d characters, more than %d", ErrInvalid, n, MaxNameLength)
	}
	var tag, digest string
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		digest = d.Digest().String()
	}
	reg, err := name.NewRegistry(domain)
	if err != nil {
		return nil, fmt.Errorf("%w: registry host %q: %w", ErrInvalid, domain, err)
	}
	repo := reg.Repo(path)
	if digest != "" {
		return withOriginal(repo, tag, digest), nil
	}
	return repo.Tag(tag), nil
}

// explain names the part of s at fault when it is the tag or the digest: distribution only
// says "invalid reference format".
func explain(s string) string {
	rest, digest, hasDigest := strings.Cut(s, "@")
	if hasDigest && !reference.DigestRegexp.MatchString(digest) {
		return fmt.Sprintf(" (digest %q is not <algorithm>:<hex>)", digest)
	}
	last := rest[strings.LastIndex(rest, "/")+1:]
	if _, tag, ok := strings.Cut(last, ":"); ok && !tagPattern.MatchString(tag) {
		return fmt.Sprintf(" (tag %q must start with a letter, digit or '_' and have at most 128 characters)", tag)
	}
	return ""
}

// withOriginal builds a digest reference that still carries its tag, so Parts can recover it.
// pkg/name cannot re-read an uppercase host, so for those the tag is dropped from the result;
// such references are never Docker Hub and so are never mapped.
func withOriginal(repo name.Repository, tag, digest string) name.Reference {
	s := repo.Name()
	if tag != "" {
		s += ":" + tag
	}
	d, err := name.NewDigest(s + "@" + digest)
	if err != nil {
		return repo.Digest(digest)
	}
	return d
}

// Parts splits a parsed reference into canonical registry, repository (with "library/" on
// Docker Hub), tag and digest. A digest reference keeps the tag it was written with, which
// pkg/name's Digest drops from its structure but keeps in its String.
func Parts(ref name.Reference) Ref {
	ctx := ref.Context()
	r := Ref{
		Registry:   CanonicalRegistry(ctx.RegistryStr()),
		Repository: ctx.RepositoryStr(),
	}
	if r.Registry == DockerHub && !strings.Contains(r.Repository, "/") {
		// pkg/name adds "library/" only for index.docker.io, not registry-1.docker.io.
		r.Repository = "library/" + r.Repository
	}
	switch v := ref.(type) {
	case name.Tag:
		r.Tag = v.TagStr()
	case name.Digest:
		r.Digest = v.DigestStr()
		base, ok := strings.CutSuffix(v.String(), "@"+v.DigestStr())
		if ok {
			if t, err := name.NewTag(base, name.WithDefaultTag("")); err == nil {
				r.Tag = t.TagStr()
			}
		}
	}
	return r
}

// Map returns where ref lives under the cache at target (host[:port]):
// "<target>/<registry>/<repository>[:tag][@digest]", with ":latest" added only when ref
// names neither tag nor digest.
func Map(target string, ref name.Reference) string {
	return target + "/" + Parts(ref).Normalized().String()
}

// Split reads a cache path "<registry>/<repository>" (the name part of a /v2/ request, or a
// rewritten reference without its target) back into the upstream registry (canonical) and
// repository. The registry must be explicit and Docker Hub repositories complete
// ("docker.io/library/nginx", not "docker.io/nginx").
func Split(cachePath string) (registry, repository string, err error) {
	host, path, ok := strings.Cut(cachePath, "/")
	switch {
	case !ok || !IsHostComponent(host):
		return "", "", fmt.Errorf("%w: cache path %q does not start with a registry host", ErrInvalid, cachePath)
	case !hostPattern.MatchString(host):
		return "", "", fmt.Errorf("%w: cache path %q: registry host %q is not a valid host[:port]", ErrInvalid, cachePath, host)
	case !pathPattern.MatchString(path):
		return "", "", fmt.Errorf("%w: cache path %q: repository %q is not a valid repository name", ErrInvalid, cachePath, path)
	case len(cachePath) > MaxNameLength:
		return "", "", fmt.Errorf("%w: cache path %q is longer than %d characters", ErrInvalid, cachePath, MaxNameLength)
	}
	registry = CanonicalRegistry(host)
	if registry == DockerHub && !strings.Contains(path, "/") {
		return "", "", fmt.Errorf("%w: cache path %q: a Docker Hub repository needs its namespace (library/…)", ErrInvalid, cachePath)
	}
	return registry, path, nil
}

// ValidHost reports whether s is a registry host[:port] in distribution's grammar.
func ValidHost(s string) bool { return hostPattern.MatchString(s) }

// ValidRepository reports whether s is a repository path (without registry) in
// distribution's grammar and within the length limit.
func ValidRepository(s string) bool { return len(s) <= MaxNameLength && pathPattern.MatchString(s) }
