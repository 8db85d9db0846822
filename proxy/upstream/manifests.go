package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/oci"
)

// HeadManifest asks upstream for a manifest's descriptor without downloading it (on
// Docker Hub a HEAD does not count against the pull limit). A tag answer without
// Docker-Content-Digest is an ErrUnavailable: the digest cannot be known without a GET.
func (c *Client) HeadManifest(ctx context.Context, registry, repo, ref string) (Descriptor, error) {
	r, rr, refDigest, err := c.resolve(registry, repo, ref)
	if err != nil {
		return Descriptor{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	resp, err := c.send(ctx, r, rr, http.MethodHead, "/manifests/"+ref, oci.ManifestTypes)
	if err != nil {
		return Descriptor{}, err
	}
	resp.Body.Close()

	desc := Descriptor{Size: resp.ContentLength, MediaType: oci.HeaderMediaType(resp.Header.Get("Content-Type"))}
	switch h := resp.Header.Get("Docker-Content-Digest"); {
	case h != "":
		d, err := v1.NewHash(h)
		if err != nil {
			return Descriptor{}, fmt.Errorf("HEAD %s/%s: %w: invalid Docker-Content-Digest %q", repo, ref, ErrUnavailable, h)
		}
		if refDigest != nil && d != *refDigest {
			return Descriptor{}, fmt.Errorf("HEAD %s@%s: %w: upstream announced %s", repo, ref, ErrDigestMismatch, d)
		}
		desc.Digest = d
	case refDigest != nil:
		desc.Digest = *refDigest
	default:
		return Descriptor{}, fmt.Errorf("HEAD %s:%s: %w: no Docker-Content-Digest", repo, ref, ErrUnavailable)
	}
	return desc, nil
}

// GetManifest downloads a manifest or index and returns its bytes exactly as served. The
// body must hash (sha256) to Docker-Content-Digest when upstream sends one and to ref when
// ref is a digest (ErrDigestMismatch), and be at most the size cap (ErrTooLarge).
func (c *Client) GetManifest(ctx context.Context, registry, repo, ref string) ([]byte, Descriptor, error) {
	r, rr, refDigest, err := c.resolve(registry, repo, ref)
	if err != nil {
		return nil, Descriptor{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	resp, err := c.send(ctx, r, rr, http.MethodGet, "/manifests/"+ref, oci.ManifestTypes)
	if err != nil {
		return nil, Descriptor{}, err
	}
	defer resp.Body.Close()

	limit := c.opts.maxManifestSize
	if resp.ContentLength > limit {
		return nil, Descriptor{}, fmt.Errorf("GET %s manifest %s: %w: %d bytes, cap %d", repo, ref, ErrTooLarge, resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, Descriptor{}, fmt.Errorf("GET %s manifest %s: reading body: %w", repo, ref, classify(err))
	}
	if int64(len(body)) > limit {
		return nil, Descriptor{}, fmt.Errorf("GET %s manifest %s: %w: over %d bytes", repo, ref, ErrTooLarge, limit)
	}

	got, _, err := v1.SHA256(bytes.NewReader(body))
	if err != nil {
		return nil, Descriptor{}, fmt.Errorf("hashing manifest: %w", err)
	}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		want, err := v1.NewHash(h)
		if err != nil {
			return nil, Descriptor{}, fmt.Errorf("GET %s manifest %s: %w: invalid Docker-Content-Digest %q", repo, ref, ErrDigestMismatch, h)
		}
		// Only sha256 can be checked; the cache addresses everything by sha256 anyway.
		if want.Algorithm == "sha256" && want != got {
			return nil, Descriptor{}, fmt.Errorf("GET %s manifest %s: %w: body is %s, upstream announced %s", repo, ref, ErrDigestMismatch, got, want)
		}
	}
	if refDigest != nil && *refDigest != got {
		return nil, Descriptor{}, fmt.Errorf("GET %s manifest %s: %w: body is %s", repo, ref, ErrDigestMismatch, got)
	}
	mt, err := oci.ManifestMediaType(resp.Header.Get("Content-Type"), body)
	if err != nil {
		return nil, Descriptor{}, fmt.Errorf("GET %s manifest %s: %w: %w", repo, ref, ErrUnavailable, err)
	}
	return body, Descriptor{Digest: got, MediaType: mt, Size: int64(len(body))}, nil
}

// resolve checks the registry, repository and reference before anything is sent.
func (c *Client) resolve(registry, repo, ref string) (*upstreamRegistry, name.Repository, *v1.Hash, error) {
	r, err := c.registry(registry)
	if err != nil {
		return nil, name.Repository{}, nil, err
	}
	rr, err := repository(r, repo)
	if err != nil {
		return nil, name.Repository{}, nil, err
	}
	if strings.Contains(ref, ":") {
		d, err := parseDigest(ref)
		if err != nil {
			return nil, name.Repository{}, nil, err
		}
		return r, rr, &d, nil
	}
	if t, err := name.NewTag(rr.Name() + ":" + ref); err != nil || t.TagStr() != ref {
		return nil, name.Repository{}, nil, fmt.Errorf("%w: invalid tag %q", ErrNotFound, ref)
	}
	return r, rr, nil, nil
}

func parseDigest(s string) (v1.Hash, error) {
	d, err := v1.NewHash(s)
	if err != nil || d.Algorithm != "sha256" || d.String() != s {
		return v1.Hash{}, fmt.Errorf("%w: invalid digest %q (sha256 only)", ErrNotFound, s)
	}
	return d, nil
}
