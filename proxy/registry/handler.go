// Package registry is the HTTP face of the cache: the read half of the OCI distribution API
// (/v2/, manifests, blobs with ranges), OCI error bodies, request logs and request metrics.
// It parses and validates every path itself and asks a Backend for content; it knows nothing
// of storage or upstreams.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/oci"
)

// Backend provides content. proxy/cache.Cache is the implementation; tests use fakes.
// Errors are the sentinels of proxy/oci (ErrManifestUnknown, …), wrapped or not.
type Backend interface {
	// Manifest returns the manifest for a tag or a digest ("sha256:…") in repo.
	Manifest(ctx context.Context, repo oci.Repo, ref string) (oci.Manifest, error)
	// Blob returns the blob; its bytes may still be arriving from upstream.
	Blob(ctx context.Context, repo oci.Repo, d v1.Hash) (oci.Blob, error)
	// StatBlob returns the size of the blob without fetching its bytes (HEAD).
	StatBlob(ctx context.Context, repo oci.Repo, d v1.Hash) (int64, error)
}

// Option configures the handler.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	registerer prometheus.Registerer
	copyBuffer int
}

// WithLogger sets where request logs go (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer registers the request metrics there (default: a private registry, so
// nothing is exported).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// handler serves the API; New wraps it in the logging and metrics middleware.
type handler struct {
	backend    Backend
	log        *slog.Logger
	copyBuffer int
}

// New returns the /v2/ API handler over b, with request logging and metrics.
func New(b Backend, opts ...Option) (http.Handler, error) {
	o := options{logger: slog.Default(), registerer: prometheus.NewRegistry(), copyBuffer: 64 << 10}
	for _, opt := range opts {
		opt(&o)
	}
	m, err := newHTTPMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	h := &handler{backend: b, log: o.logger, copyBuffer: o.copyBuffer}
	return instrument(h, o.logger, m), nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t, err := oci.ParsePath(r.URL)
	setRoute(r.Context(), t.Route)
	if t.Route == oci.RouteUpload || (err == nil && t.Route != oci.RouteBase && !isRead(r.Method)) {
		h.fail(w, r, oci.NewError(http.StatusMethodNotAllowed, oci.CodeUnsupported, "this registry is a read-only pull-through cache"))
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	switch t.Route {
	case oci.RouteBase:
		if !isRead(r.Method) {
			h.fail(w, r, oci.NewError(http.StatusMethodNotAllowed, oci.CodeUnsupported, "method not allowed"))
			return
		}
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, "{}")
		}
	case oci.RouteManifest:
		h.serveManifest(w, r, t)
	case oci.RouteBlob:
		if r.Method == http.MethodHead {
			h.headBlob(w, r, t)
			return
		}
		h.getBlob(w, r, t)
	}
}

func isRead(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// fail writes err as an OCI error; what the client is not told goes to the request's log.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	oci.WriteError(w, r, loggerFrom(r.Context(), h.log), err)
}

func (h *handler) serveManifest(w http.ResponseWriter, r *http.Request, t oci.Path) {
	m, err := h.backend.Manifest(r.Context(), t.Repo, t.Reference)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if t.ByDigest && m.Digest != t.Digest {
		// The Backend verifies content; a mismatch here is a bug, never served.
		h.fail(w, r, fmt.Errorf("backend returned manifest %s for %s", m.Digest, t.Digest))
		return
	}
	etag := `"` + m.Digest.String() + `"`
	hdr := w.Header()
	hdr.Set("Docker-Content-Digest", m.Digest.String())
	hdr.Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Type", m.MediaType)
	hdr.Set("Content-Length", strconv.Itoa(len(m.Body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(m.Body)
	}
}

func blobHeaders(w http.ResponseWriter, d v1.Hash) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Docker-Content-Digest", d.String())
	hdr.Set("ETag", `"`+d.String()+`"`)
	hdr.Set("Accept-Ranges", "bytes")
}

func (h *handler) headBlob(w http.ResponseWriter, r *http.Request, t oci.Path) {
	size, err := h.backend.StatBlob(r.Context(), t.Repo, t.Digest)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	blobHeaders(w, t.Digest)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
}

// getBlob sends headers as soon as the blob is known (cached or its upstream fill started)
// and streams bytes as they arrive, flushing each chunk: containerd waits at most 30 s for
// response headers. If the bytes fail after headers went out, the response is aborted so the
// client sees a broken transfer rather than a complete-looking body.
func (h *handler) getBlob(w http.ResponseWriter, r *http.Request, t oci.Path) {
	ctx := r.Context()
	b, err := h.backend.Blob(ctx, t.Repo, t.Digest)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	size := b.Size()
	rng, partial, err := parseRange(r.Header.Get("Range"), size)
	if errors.Is(err, errUnsatisfiable) {
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		h.fail(w, r, oci.NewError(http.StatusRequestedRangeNotSatisfiable, oci.CodeRangeUnsatisfied, "range not satisfiable"))
		return
	}
	offset, length := int64(0), size
	if partial {
		offset, length = rng.offset, rng.length
	}
	rc, err := b.Open(ctx, offset, length)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer rc.Close()

	blobHeaders(w, t.Digest)
	if length >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, offset+length-1, size))
	}
	w.WriteHeader(status)
	_ = http.NewResponseController(w).Flush()

	written, err, werr := oci.Send(w, rc, func() []byte { return make([]byte, h.copyBuffer) })
	clientGone := werr != nil
	if err == nil && !clientGone && length >= 0 && written != length {
		err = fmt.Errorf("blob ended after %d of %d bytes", written, length)
	}
	if err != nil || clientGone {
		if err != nil && ctx.Err() == nil {
			loggerFrom(ctx, h.log).Error("blob stream failed; aborting response",
				"digest", t.Digest.String(), "repo", t.Repo.String(), "written", written, "error", err.Error())
		}
		setAborted(ctx)
		// The only way to tell an HTTP/1.1 or HTTP/2 client that a body with a
		// Content-Length is broken: reset the connection or stream.
		panic(http.ErrAbortHandler)
	}
}
