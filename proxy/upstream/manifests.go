package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// manifestTypes are the manifest media types asked for and accepted: OCI index and manifest,
// Docker manifest list and schema 2. Docker schema 1 is not supported.
var manifestTypes = []string{
	string(types.OCIImageIndex),
	string(types.OCIManifestSchema1),
	string(types.DockerManifestList),
	string(types.DockerManifestSchema2),
}

func acceptedType(mt string) bool {
	for _, t := range manifestTypes {
		if mt == t {
			return true
		}
	}
	return false
}

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
	resp, err := c.send(ctx, r, rr, http.MethodHead, "/manifests/"+ref, manifestTypes)
	if err != nil {
		return Descriptor{}, err
	}
	resp.Body.Close()

	desc := Descriptor{Size: resp.ContentLength, MediaType: headerMediaType(resp.Header.Get("Content-Type"))}
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
	resp, err := c.send(ctx, r, rr, http.MethodGet, "/manifests/"+ref, manifestTypes)
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
	mt, err := bodyMediaType(resp.Header.Get("Content-Type"), body)
	if err != nil {
		return nil, Descriptor{}, fmt.Errorf("GET %s manifest %s: %w", repo, ref, err)
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

// headerMediaType is the media type of a Content-Type header, without parameters.
func headerMediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.TrimSpace(ct)
	}
	return mt
}

// bodyMediaType decides a manifest's media type: the Content-Type when it is a manifest
// type, else the body's mediaType field, else its shape (OCI manifests may omit mediaType).
func bodyMediaType(contentType string, body []byte) (string, error) {
	if mt := headerMediaType(contentType); acceptedType(mt) {
		return mt, nil
	}
	var m struct {
		MediaType     string          `json:"mediaType"`
		SchemaVersion json.RawMessage `json:"schemaVersion"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
		Layers        json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", fmt.Errorf("%w: manifest is not JSON (Content-Type %q)", ErrUnavailable, contentType)
	}
	switch {
	case acceptedType(m.MediaType):
		return m.MediaType, nil
	case m.MediaType != "":
		return "", fmt.Errorf("%w: unsupported manifest media type %q", ErrUnavailable, m.MediaType)
	case string(m.SchemaVersion) == "2" && m.Manifests != nil:
		return string(types.OCIImageIndex), nil
	case string(m.SchemaVersion) == "2" && m.Config != nil && m.Layers != nil:
		return string(types.OCIManifestSchema1), nil
	}
	return "", fmt.Errorf("%w: unsupported manifest (Content-Type %q, schemaVersion %s)", ErrUnavailable, contentType, strconv.Quote(string(m.SchemaVersion)))
}
