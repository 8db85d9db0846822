package metadata

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrInvalid is returned for a record that cannot be stored: an empty repository or tag, a
// digest that is not sha256 with 64 lowercase hex characters, a negative size.
var ErrInvalid = errors.New("invalid metadata")

// CheckTag reports whether a tag record can be stored; implementations call it before writing.
func CheckTag(repo, tag string, t Tag) error {
	if err := checkNames(repo, tag); err != nil {
		return err
	}
	return CheckDigest(t.Digest)
}

// CheckManifest reports whether a manifest record can be stored.
func CheckManifest(repo string, m Manifest) error {
	if err := checkNames(repo, "-"); err != nil {
		return err
	}
	if m.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrInvalid, m.Size)
	}
	return CheckDigest(m.Digest)
}

// CheckBlob reports whether a blob record can be stored.
func CheckBlob(repo string, b Blob) error {
	if err := checkNames(repo, "-"); err != nil {
		return err
	}
	if b.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrInvalid, b.Size)
	}
	return CheckDigest(b.Digest)
}

func checkNames(repo, tag string) error {
	if repo == "" {
		return fmt.Errorf("%w: empty repository", ErrInvalid)
	}
	if tag == "" {
		return fmt.Errorf("%w: empty tag", ErrInvalid)
	}
	return nil
}

// CheckDigest reports whether d is a sha256 digest with 64 lowercase hex characters, the only
// kind the cache stores.
func CheckDigest(d v1.Hash) error {
	ok := d.Algorithm == "sha256" && len(d.Hex) == 64
	for _, c := range []byte(d.Hex) {
		ok = ok && ('0' <= c && c <= '9' || 'a' <= c && c <= 'f')
	}
	if !ok {
		return fmt.Errorf("%w: digest %q", ErrInvalid, d.Algorithm+":"+d.Hex)
	}
	return nil
}
