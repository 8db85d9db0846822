package node

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/hubcache/hubcache/proxy/oci"
)

// copyBufferSize is what one streaming response holds in memory at a time.
const copyBufferSize = 32 << 10

// hopHeaders belong to one connection, not to the response, and are never relayed.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// upstreamHeaders are the response headers relayed from an upstream registry in fallback:
// what a registry client needs, nothing that would set cookies or ask the kubelet for
// credentials it does not have.
var upstreamHeaders = map[string]bool{
	"Content-Type":                    true,
	"Content-Length":                  true,
	"Content-Range":                   true,
	"Accept-Ranges":                   true,
	"Docker-Content-Digest":           true,
	"Docker-Distribution-Api-Version": true,
	"Etag":                            true,
	"Last-Modified":                   true,
	"Retry-After":                     true,
	"Link":                            true,
	"Ratelimit-Limit":                 true,
	"Ratelimit-Remaining":             true,
	"Docker-Ratelimit-Source":         true,
}

// requestHeaders are the client request headers passed on, to the proxy and upstream alike.
var requestHeaders = []string{
	"Accept", "Range", "If-Range", "If-None-Match", "If-Match", "If-Modified-Since", "User-Agent",
}

// errAborted marks a response whose headers were sent but whose body could not be finished.
var errAborted = errors.New("response aborted after headers were sent")

func copyRequestHeaders(dst, src http.Header) {
	for _, k := range requestHeaders {
		for _, v := range src.Values(k) {
			dst.Add(k, v)
		}
	}
}

// proxyHeaderFilter keeps every end-to-end header of the proxy's response.
func proxyHeaderFilter(h http.Header) func(string) bool {
	// The node sets its own request id (the proxy's is the same one).
	drop := map[string]bool{oci.RequestIDHeader: true}
	for _, k := range hopHeaders {
		drop[k] = true
	}
	for _, v := range h.Values("Connection") {
		for _, k := range strings.Split(v, ",") {
			drop[http.CanonicalHeaderKey(strings.TrimSpace(k))] = true
		}
	}
	return func(k string) bool { return !drop[k] }
}

func upstreamHeaderFilter(k string) bool { return upstreamHeaders[k] }

// relay sends resp to the client: status and the headers keep allows at once, then the body
// as it arrives, flushed after every read so the kubelet sees bytes while they are still
// being fetched. It returns the body bytes written. A body that fails after the headers
// went out returns an error wrapping errAborted: the caller must abort the connection so the
// client cannot mistake a truncated body for a complete one.
func relay(w http.ResponseWriter, r *http.Request, resp *http.Response, keep func(string) bool, pool *sync.Pool) (int64, error) {
	h := w.Header()
	for k, vs := range resp.Header {
		if !keep(k) {
			continue
		}
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	} else {
		h.Del("Content-Length")
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	if r.Method == http.MethodHead {
		_ = rc.Flush()
		return 0, nil
	}
	// Headers first: containerd gives up after 30 s without them.
	_ = rc.Flush()

	bufp := pool.Get().(*[]byte)
	defer pool.Put(bufp)
	written, rerr, werr := oci.Stream(w, resp.Body, *bufp)
	if err := errors.Join(rerr, werr); err != nil {
		return written, errors.Join(errAborted, err)
	}
	return written, nil
}

func newBufferPool() *sync.Pool {
	return &sync.Pool{New: func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}}
}
