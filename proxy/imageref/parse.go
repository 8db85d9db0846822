package imageref

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// ErrInvalid is wrapped by every error about a malformed reference or cache path.
var ErrInvalid = errors.New("invalid image reference")

// MaxNameLength is the longest a repository name (registry host and path, without tag or
// digest) may be; distribution's reference package enforces the same limit.
const MaxNameLength = 255

// pkg/name is lenient where distribution (and therefore containerd and the API server's
// users) is strict: it accepts empty or badly separated path components ("a//b", "-a", "a.."),
// tags that start with '.' or '-', and any URL authority as a host. These patterns are
// distribution's grammar, applied to the parts pkg/name has already separated.
var (
	hostPattern      = regexp.MustCompile(`^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`)
	pathPattern      = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	tagPattern       = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	upperHostPattern = regexp.MustCompile(`[A-Z]`)
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

// Parse parses an image reference as a container runtime would read it: pkg/name for the
// structure, distribution's grammar for the parts pkg/name accepts too readily. An explicit
// tag is kept distinguishable from none (Parts reports Tag ""), so ":latest" is added only
// where the user wrote neither tag nor digest.
//
// StrictValidation is not used: it rejects exactly the short forms users write ("nginx",
// "bitnami/redis"), which Docker Hub's defaults complete.
func Parse(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s, name.WithDefaultTag(""))
	if err != nil {
		// Distribution reads an uppercase first component as a registry host ("MyReg/app");
		// pkg/name reads it as part of the repository and rejects the uppercase.
		if r, ok := parseUppercaseHost(s); ok {
			return r, nil
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, explain(s, err))
	}
	if err := check(ref); err != nil {
		return nil, err
	}
	return ref, nil
}

// explain replaces ParseReference's "could not parse reference" with the specific complaint
// of the tag or digest parser, whichever applies.
func explain(s string, err error) error {
	if strings.Contains(s, "http://") || strings.Contains(s, "https://") {
		return err
	}
	if strings.Contains(s, "@") {
		if _, derr := name.NewDigest(s, name.WithDefaultTag("")); derr != nil {
			return derr
		}
		return err
	}
	if _, terr := name.NewTag(s, name.WithDefaultTag("")); terr != nil {
		return terr
	}
	return err
}

// parseUppercaseHost handles "Host/repo[:tag][@digest]" where Host has uppercase letters but
// no '.' or ':', so pkg/name does not see it as a host. The rest is parsed by pkg/name under a
// stand-in host it does recognise, and the real host put back.
func parseUppercaseHost(s string) (name.Reference, bool) {
	host, rest, ok := strings.Cut(s, "/")
	if !ok || !upperHostPattern.MatchString(host) || !hostPattern.MatchString(host) {
		return nil, false
	}
	stand, err := name.ParseReference("localhost/"+rest, name.WithDefaultTag(""))
	if err != nil {
		return nil, false
	}
	reg, err := name.NewRegistry(host)
	if err != nil {
		return nil, false
	}
	repo := reg.Repo(stand.Context().RepositoryStr())
	var ref name.Reference
	switch r := stand.(type) {
	case name.Digest:
		ref = withOriginal(repo, Parts(r).Tag, r.DigestStr())
	case name.Tag:
		ref = repo.Tag(r.TagStr())
	default:
		return nil, false
	}
	if check(ref) != nil {
		return nil, false
	}
	return ref, true
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

// check applies distribution's grammar to the parts pkg/name separated.
func check(ref name.Reference) error {
	p := Parts(ref)
	host := ref.Context().RegistryStr()
	if !hostPattern.MatchString(host) {
		return fmt.Errorf("%w: registry host %q is not a valid host[:port]", ErrInvalid, host)
	}
	if !pathPattern.MatchString(p.Repository) {
		return fmt.Errorf("%w: repository %q: components must be lowercase letters and digits separated by '.', '_', '__' or '-'", ErrInvalid, p.Repository)
	}
	if p.Tag != "" && !tagPattern.MatchString(p.Tag) {
		return fmt.Errorf("%w: tag %q must start with a letter, digit or '_'", ErrInvalid, p.Tag)
	}
	if n := len(p.Name()); n > MaxNameLength {
		return fmt.Errorf("%w: name is %d characters, more than %d", ErrInvalid, n, MaxNameLength)
	}
	return nil
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
	repo, err := name.NewRepository(cachePath, name.StrictValidation)
	if err != nil {
		return "", "", fmt.Errorf("%w: cache path %q: %w", ErrInvalid, cachePath, err)
	}
	host := repo.RegistryStr()
	if !hostPattern.MatchString(host) {
		return "", "", fmt.Errorf("%w: cache path %q: registry host %q is not a valid host[:port]", ErrInvalid, cachePath, host)
	}
	repository = repo.RepositoryStr()
	if !pathPattern.MatchString(repository) {
		return "", "", fmt.Errorf("%w: cache path %q: repository %q is not a valid repository name", ErrInvalid, cachePath, repository)
	}
	if len(cachePath) > MaxNameLength {
		return "", "", fmt.Errorf("%w: cache path %q is longer than %d characters", ErrInvalid, cachePath, MaxNameLength)
	}
	return CanonicalRegistry(host), repository, nil
}

// ValidHost reports whether s is a registry host[:port] in distribution's grammar.
func ValidHost(s string) bool { return hostPattern.MatchString(s) }
