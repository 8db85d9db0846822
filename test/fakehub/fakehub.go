// Package fakehub is a fake Docker Hub for tests: go-containerregistry's in-memory registry
// behind Docker Hub's Bearer-token challenge and token endpoint. It counts manifest GET/HEAD
// and blob GET/HEAD requests, sends the ratelimit-* headers Docker Hub sends, and can be
// switched into failure modes (down, 5xx, 429, 401, corrupt, truncated, slow), globally or for
// one digest. Repositories can be made private (WithPrivateRepositories, SetPrivate): as on
// Docker Hub, the token endpoint still issues an anonymous token, but that token does not
// grant pull on a private repository and the registry answers 401 for it.
package fakehub

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Service is the service name in the Bearer challenge, as on Docker Hub.
const Service = "registry.docker.io"

// RateLimitWindow is the window (seconds) sent in the ratelimit-* headers, as on Docker Hub.
const RateLimitWindow = 21600

// PullLimitMessage is the message of Docker Hub's pull-limit 429.
const PullLimitMessage = "You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"

// Counts are the requests the hub received. Requests refused by the Bearer challenge (no or
// unknown token) are not counted as manifest or blob requests, only as Challenged: a real
// client sends each of them once more with a token. Requests answered with an error by a
// failure mode are counted.
type Counts struct {
	// ManifestGET and ManifestHEAD are keyed "repo:tag" or "repo@sha256:…".
	ManifestGET  map[string]int
	ManifestHEAD map[string]int
	// BlobGET and BlobHEAD are keyed by digest ("sha256:…").
	BlobGET  map[string]int
	BlobHEAD map[string]int
	// Token counts token requests; TokenWithCredentials those that carried basic auth.
	Token                int
	TokenWithCredentials int
	// Challenged counts /v2/ requests answered 401 with a challenge.
	Challenged int
	// Denied counts manifest and blob requests for a private repository made with a token
	// that does not grant pull on it (answered 401, insufficient_scope), keyed by repository.
	// They are also counted by method above, and never use the pull limit.
	Denied map[string]int
}

// TotalManifestGET is the number of manifest GETs over all repositories and references.
func (c Counts) TotalManifestGET() int { return sum(c.ManifestGET) }

// TotalManifestHEAD is the number of manifest HEADs over all repositories and references.
func (c Counts) TotalManifestHEAD() int { return sum(c.ManifestHEAD) }

// TotalBlobGET is the number of blob GETs over all digests.
func (c Counts) TotalBlobGET() int { return sum(c.BlobGET) }

// TotalBlobHEAD is the number of blob HEADs over all digests.
func (c Counts) TotalBlobHEAD() int { return sum(c.BlobHEAD) }

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func newCounts() Counts {
	return Counts{
		ManifestGET:  map[string]int{},
		ManifestHEAD: map[string]int{},
		BlobGET:      map[string]int{},
		BlobHEAD:     map[string]int{},
		Denied:       map[string]int{},
	}
}

func (c Counts) clone() Counts {
	out := newCounts()
	for k, v := range c.ManifestGET {
		out.ManifestGET[k] = v
	}
	for k, v := range c.ManifestHEAD {
		out.ManifestHEAD[k] = v
	}
	for k, v := range c.BlobGET {
		out.BlobGET[k] = v
	}
	for k, v := range c.BlobHEAD {
		out.BlobHEAD[k] = v
	}
	for k, v := range c.Denied {
		out.Denied[k] = v
	}
	out.Token, out.TokenWithCredentials, out.Challenged = c.Token, c.TokenWithCredentials, c.Challenged
	return out
}

// Option configures a Hub.
type Option func(*Hub)

// WithCredentials makes the token endpoint require these basic-auth credentials; anonymous
// token requests get 401, like a private repository on Docker Hub.
func WithCredentials(username, password string) Option {
	return func(h *Hub) { h.username, h.password = username, password }
}

// WithPrivateRepositories makes repos private: only a token requested with these basic-auth
// credentials grants pull on them. Anonymous token requests still get a token (good for every
// public repository), as on Docker Hub; a manifest or blob request for a private repository
// with it is answered 401 UNAUTHORIZED with an insufficient_scope challenge. The same
// credentials are accepted by the token endpoint for public repositories too.
func WithPrivateRepositories(username, password string, repos ...string) Option {
	return func(h *Hub) {
		h.privUser, h.privPass = username, password
		for _, r := range repos {
			h.private[r] = true
		}
	}
}

// WithPullLimit sets the ratelimit-limit to n and enforces it: once n manifest GETs were
// served, manifest GETs get Docker Hub's pull-limit 429 until Reset. Without this option
// the limit is 100 and only reported, never enforced.
func WithPullLimit(n int) Option {
	return func(h *Hub) { h.limit, h.remaining, h.enforce = n, n, true }
}

// Hub is a running fake Docker Hub.
type Hub struct {
	srv      *httptest.Server
	inner    http.Handler
	url      string
	username string
	password string

	mu          sync.Mutex
	counts      Counts
	limit       int
	remaining   int
	enforce     bool
	mode        Mode
	digestModes map[string]Mode
	// tokens maps each issued token to whether it grants pull on private repositories.
	tokens map[string]bool
	// private repositories and the credentials that unlock them.
	private  map[string]bool
	privUser string
	privPass string
	// links records which repositories each blob was pushed to: a blob is served only under
	// those, as on Docker Hub, so tests can check that the cache does not leak blobs between
	// repositories.
	links map[string]map[string]bool
}

// New starts a hub on 127.0.0.1; it stops when the test ends.
func New(t testing.TB, opts ...Option) *Hub {
	t.Helper()
	h := &Hub{
		inner:       registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		counts:      newCounts(),
		limit:       100,
		remaining:   100,
		digestModes: map[string]Mode{},
		tokens:      map[string]bool{},
		private:     map[string]bool{},
		links:       map[string]map[string]bool{},
	}
	for _, o := range opts {
		o(h)
	}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(h.serve))
	h.url = "http://" + h.srv.Listener.Addr().String()
	h.srv.Start()
	t.Cleanup(h.srv.Close)
	return h
}

// URL is the hub's base URL, "http://127.0.0.1:PORT".
func (h *Hub) URL() string { return h.url }

// Host is the hub's "127.0.0.1:PORT", usable as a registry name.
func (h *Hub) Host() string { return strings.TrimPrefix(h.url, "http://") }

// Counts returns a copy of the request counts since the start or the last Reset.
func (h *Hub) Counts() Counts {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts.clone()
}

// Reset zeroes the counts and refills the rate limit.
func (h *Hub) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts = newCounts()
	h.remaining = h.limit
}

// SetMode switches the whole hub into m (Normal() to recover).
func (h *Hub) SetMode(m Mode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mode = m
}

// SetDigestMode switches requests for one manifest or blob digest into m; a manifest
// requested by a tag that points at d is included. The global mode, when not Normal, wins.
func (h *Hub) SetDigestMode(d v1.Hash, m Mode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m.kind == kindNormal {
		delete(h.digestModes, d.String())
		return
	}
	h.digestModes[d.String()] = m
}

// SetPrivate makes repo private (true) or public (false) from now on; tokens already issued
// keep what they grant. The credentials are those of WithPrivateRepositories.
func (h *Hub) SetPrivate(repo string, private bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if private {
		h.private[repo] = true
		return
	}
	delete(h.private, repo)
}

// RateLimitRemaining is the ratelimit-remaining the hub currently reports.
func (h *Hub) RateLimitRemaining() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.remaining
}

// request is a parsed /v2/ path.
type request struct {
	kind string // "ping", "manifests", "blobs", "other"
	repo string
	ref  string
}

func parsePath(p string) request {
	rest := strings.TrimPrefix(p, "/v2/")
	if rest == "" {
		return request{kind: "ping"}
	}
	elem := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	if len(elem) >= 3 {
		kind := elem[len(elem)-2]
		if kind == "manifests" || kind == "blobs" {
			return request{kind: kind, repo: strings.Join(elem[:len(elem)-2], "/"), ref: elem[len(elem)-1]}
		}
	}
	return request{kind: "other"}
}

func (h *Hub) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	global := h.mode
	h.mu.Unlock()
	if global.kind == kindDown {
		hangUp(w)
		return
	}
	switch {
	case r.URL.Path == "/token":
		h.serveToken(w, r, global)
	case r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/"):
		h.serveV2(w, r, global)
	default:
		http.NotFound(w, r)
	}
}

// hangUp closes the connection without answering, like a registry that went away.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

func (h *Hub) serveToken(w http.ResponseWriter, r *http.Request, global Mode) {
	user, pass, hasBasic := r.BasicAuth()
	if r.Method == http.MethodPost {
		// The OAuth2 form containerd sends when it has credentials (grant_type=password);
		// Docker Hub accepts it too. Counted like basic auth.
		if err := r.ParseForm(); err == nil && r.PostForm.Get("grant_type") == "password" {
			user, pass, hasBasic = r.PostForm.Get("username"), r.PostForm.Get("password"), true
		}
	}
	h.mu.Lock()
	h.counts.Token++
	if hasBasic {
		h.counts.TokenWithCredentials++
	}
	h.mu.Unlock()
	privileged := hasBasic && h.privUser != "" && user == h.privUser && pass == h.privPass
	if global.kind == kindUnauthorized ||
		(h.username != "" && !privileged && (!hasBasic || user != h.username || pass != h.password)) ||
		(h.username == "" && hasBasic && !privileged) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"details":"incorrect username or password"}`)
		return
	}
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	tok := hex.EncodeToString(buf)
	h.mu.Lock()
	h.tokens[tok] = privileged
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   300,
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	})
}

// authorized reports whether the request carries a token the hub issued, and whether that
// token grants pull on private repositories.
func (h *Hub) authorized(r *http.Request) (known, privileged bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	privileged, known = h.tokens[tok]
	return known, privileged
}

// deniedPrivate reports whether req is for a private repository the token does not grant.
func (h *Hub) deniedPrivate(req request, privileged bool) bool {
	if privileged || (req.kind != "manifests" && req.kind != "blobs") {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.private[req.repo]
}

func (h *Hub) challenge(w http.ResponseWriter, req request) {
	c := fmt.Sprintf(`Bearer realm="%s/token",service="%s"`, h.url, Service)
	if req.repo != "" {
		c += fmt.Sprintf(`,scope="repository:%s:pull"`, req.repo)
	}
	w.Header().Set("WWW-Authenticate", c)
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	body, _ := json.Marshal(map[string]any{
		"errors": []map[string]string{{"code": code, "message": message}},
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (h *Hub) serveV2(w http.ResponseWriter, r *http.Request, global Mode) {
	req := parsePath(r.URL.Path)
	h.setRateLimitHeaders(w)
	known, privileged := h.authorized(r)
	if global.kind == kindUnauthorized || !known {
		h.mu.Lock()
		h.counts.Challenged++
		h.mu.Unlock()
		h.challenge(w, req)
		return
	}
	if h.deniedPrivate(req, privileged) {
		// Docker Hub answers a token without the pull scope like a missing token, with
		// error="insufficient_scope" in the challenge; nothing is served, no pull is used.
		h.count(r.Method, req)
		h.mu.Lock()
		h.counts.Denied[req.repo]++
		h.mu.Unlock()
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(
			`Bearer realm="%s/token",service="%s",scope="repository:%s:pull",error="insufficient_scope"`,
			h.url, Service, req.repo))
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the fake hub is read-only over HTTP; use Push")
		return
	}

	digest := h.digestOf(req)
	mode := h.modeFor(global, digest)
	h.count(r.Method, req)

	switch mode.kind {
	case kindDown:
		hangUp(w)
		return
	case kindStatus:
		writeError(w, mode.status, "UNAVAILABLE", http.StatusText(mode.status))
		return
	case kindRateLimited:
		if r.Method == http.MethodGet && (req.kind == "manifests" || req.kind == "blobs") {
			writeRateLimited(w, mode.retryAfter)
			return
		}
	}

	if req.kind == "manifests" && r.Method == http.MethodGet {
		if !h.takePull() {
			writeRateLimited(w, time.Hour)
			return
		}
		h.setRateLimitHeaders(w)
	}
	if req.kind == "blobs" && r.Method == http.MethodHead && mode.kind == kindHeadNoLength {
		w.Header().Set("Docker-Content-Digest", req.ref)
		w.WriteHeader(http.StatusOK)
		return
	}
	if req.kind == "blobs" && !h.linked(req.repo, req.ref) {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}

	if req.kind == "blobs" && r.Method == http.MethodGet {
		switch mode.kind {
		case kindRedirect:
			http.Redirect(w, r, mode.location+r.URL.Path, http.StatusTemporaryRedirect)
			return
		case kindEndless:
			serveEndless(w, r)
			return
		}
	}
	if mode.kind == kindSlow && !sleep(r, mode.headerDelay) {
		return
	}
	bodyMode := mode
	if r.Method != http.MethodGet || (req.kind != "manifests" && req.kind != "blobs") {
		if mode.kind == kindCorrupt || mode.kind == kindTruncated {
			bodyMode = Normal()
		}
	}
	if bodyMode.kind == kindNormal {
		h.inner.ServeHTTP(w, r)
		return
	}
	bw := &bodyWriter{ResponseWriter: w, r: r, mode: bodyMode}
	h.inner.ServeHTTP(bw, r)
	if bw.cut {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
}

func writeRateLimited(w http.ResponseWriter, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", PullLimitMessage)
}

func (h *Hub) setRateLimitHeaders(w http.ResponseWriter) {
	h.mu.Lock()
	limit, remaining := h.limit, h.remaining
	h.mu.Unlock()
	w.Header().Set("ratelimit-limit", fmt.Sprintf("%d;w=%d", limit, RateLimitWindow))
	w.Header().Set("ratelimit-remaining", fmt.Sprintf("%d;w=%d", remaining, RateLimitWindow))
	w.Header().Set("docker-ratelimit-source", "127.0.0.1")
}

// takePull uses one pull from the limit; false when the enforced limit is exhausted.
func (h *Hub) takePull() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.remaining <= 0 {
		return !h.enforce
	}
	h.remaining--
	return true
}

func (h *Hub) count(method string, req request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var m map[string]int
	key := req.ref
	switch {
	case req.kind == "manifests" && method == http.MethodGet:
		m = h.counts.ManifestGET
	case req.kind == "manifests" && method == http.MethodHead:
		m = h.counts.ManifestHEAD
	case req.kind == "blobs" && method == http.MethodGet:
		m = h.counts.BlobGET
	case req.kind == "blobs" && method == http.MethodHead:
		m = h.counts.BlobHEAD
	default:
		return
	}
	if req.kind == "manifests" {
		key = manifestKey(req.repo, req.ref)
	}
	m[key]++
}

func manifestKey(repo, ref string) string {
	if strings.Contains(ref, ":") {
		return repo + "@" + ref
	}
	return repo + ":" + ref
}

// digestOf is the digest a request is about: the reference itself, or the digest a tag
// points at (asked from the inner registry, which counts nothing).
func (h *Hub) digestOf(req request) string {
	switch {
	case req.kind == "blobs":
		return req.ref
	case req.kind != "manifests":
		return ""
	case strings.Contains(req.ref, ":"):
		return req.ref
	}
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodHead, "/v2/"+req.repo+"/manifests/"+req.ref, nil)
	h.inner.ServeHTTP(rec, r)
	return rec.Header().Get("Docker-Content-Digest")
}

func (h *Hub) modeFor(global Mode, digest string) Mode {
	if global.kind != kindNormal || digest == "" {
		return global
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.digestModes[digest]
}

func (h *Hub) linked(repo, digest string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.links[repo][digest]
}

func (h *Hub) link(repo string, digests ...v1.Hash) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.links[repo] == nil {
		h.links[repo] = map[string]bool{}
	}
	for _, d := range digests {
		h.links[repo][d.String()] = true
	}
}

// sleep waits d or until the client leaves; false when the client left.
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// bodyWriter damages or throttles a response body on its way out.
type bodyWriter struct {
	http.ResponseWriter
	r       *http.Request
	mode    Mode
	length  int64 // declared Content-Length, -1 when unknown
	written int64
	cut     bool
	started bool
	// Slow: when the first chunk went out, and how many have.
	paceStart time.Time
	chunks    int
}

const chunkSize = 32 << 10

func (b *bodyWriter) WriteHeader(code int) {
	if !b.started {
		b.started = true
		b.length = -1
		if n, err := strconv.ParseInt(b.Header().Get("Content-Length"), 10, 64); err == nil {
			b.length = n
		}
	}
	b.ResponseWriter.WriteHeader(code)
}

func (b *bodyWriter) Write(p []byte) (int, error) {
	if !b.started {
		b.WriteHeader(http.StatusOK)
	}
	total := len(p)
	switch b.mode.kind {
	case kindCorrupt:
		flipAt := b.length / 2
		if b.length < 0 {
			flipAt = 0
		}
		if flipAt >= b.written && flipAt < b.written+int64(len(p)) {
			q := append([]byte(nil), p...)
			q[flipAt-b.written] ^= 0xff
			p = q
		}
	case kindTruncated:
		if b.cut {
			return 0, io.ErrClosedPipe
		}
		limit := b.length / 2
		if b.length < 0 {
			limit = 0
		}
		if b.written+int64(len(p)) > limit {
			p = p[:max(limit-b.written, 0)]
			b.cut = true
		}
	case kindSlow:
		for len(p) > 0 {
			// Chunk k goes out at chunkDelay × k after the first, never earlier: the pace is a
			// rate, as a link's is. Sleeping chunkDelay after each chunk instead made a body
			// slower whenever this process was busy (the timers fire late), so a benchmark
			// that loads the process with its clients got a slower upstream than one that
			// does not.
			if b.chunks == 0 {
				b.paceStart = time.Now()
			} else if !sleep(b.r, time.Until(b.paceStart.Add(time.Duration(b.chunks)*b.mode.chunkDelay))) {
				return 0, b.r.Context().Err()
			}
			n := min(len(p), chunkSize)
			if _, err := b.ResponseWriter.Write(p[:n]); err != nil {
				return 0, err
			}
			b.chunks++
			b.written += int64(n)
			p = p[n:]
			if f, ok := b.ResponseWriter.(http.Flusher); ok {
				f.Flush()
			}
		}
		return total, nil
	}
	n, err := b.ResponseWriter.Write(p)
	b.written += int64(n)
	if err != nil {
		return n, err
	}
	if b.cut {
		return n, io.ErrClosedPipe
	}
	return total, nil
}

func (b *bodyWriter) Flush() {
	if f, ok := b.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// serveEndless sends zeros without a Content-Length until the client goes away.
func serveEndless(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	chunk := make([]byte, 64<<10)
	for r.Context().Err() == nil {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}
