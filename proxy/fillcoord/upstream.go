package fillcoord

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/cache"
)

// errPeerRefused: the holder rejected our secret; retrying cannot help.
var errPeerRefused = errors.New("holder refused the fill secret")

// Upstream decorates the cache's upstream client so that a blob fill takes the fill lease
// first. The holder fetches from upstream as before (the lease is released when the fill
// closes the body); any other replica confirms the blob with a HEAD (free on Docker Hub, and
// it proves the repository has it) and then streams the bytes from the holder. When the
// holder goes away mid-stream, the follower asks for the lease again: it either follows the
// new holder, or takes the lease and reads the rest from upstream itself. The cache verifies
// the digest of the whole body as it always does, whatever mix of sources it came from.
type Upstream struct {
	cache.Upstream
	coord  *Coordinator
	secret string
	store  blobstore.Store
	client *http.Client
	scheme string // of the peers' fill endpoint: "https" with WithPeerTLS, else "http"
	log    *slog.Logger
}

// UpstreamOption configures an Upstream.
type UpstreamOption func(*Upstream, *http.Transport)

// WithPeerTLS reads the other replicas' fills over TLS with cfg (their registry listener
// serves TLS, and with mutual TLS asks for this replica's certificate). Without it, fills
// are read over plain HTTP.
func WithPeerTLS(cfg *tls.Config) UpstreamOption {
	return func(u *Upstream, t *http.Transport) {
		u.scheme = "https"
		t.TLSClientConfig = cfg
	}
}

// NewUpstream wraps up. secret authenticates this replica to the holders' fill endpoints.
// store is the shared blob store: a follower's fill then writes nothing (the holder commits the
// object, or the follower itself when it takes the fill over), so each cold blob is uploaded
// once. With a nil store every fill writes its own copy.
func NewUpstream(up cache.Upstream, coord *Coordinator, secret string, store blobstore.Store, opts ...UpstreamOption) *Upstream {
	t := &http.Transport{
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		// The holder answers once its own upstream answered.
		ResponseHeaderTimeout: 2 * time.Minute,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   16,
	}
	u := &Upstream{
		Upstream: up,
		coord:    coord,
		secret:   secret,
		store:    store,
		scheme:   "http",
		log:      coord.log,
		client:   &http.Client{Transport: t},
	}
	for _, o := range opts {
		o(u, t)
	}
	return u
}

// GetBlob returns upstream's body (this replica holds the lease) or a body read from the
// replica that holds it.
func (u *Upstream) GetBlob(ctx context.Context, registry, repo string, d v1.Hash) (io.ReadCloser, int64, error) {
	release, addr, err := u.coord.Acquire(ctx, d.String())
	if err != nil {
		// Postgres is down: fill uncoordinated rather than fail.
		u.log.Warn("fill lease unavailable; fetching without coordination", "digest", d.String(), "error", err.Error())
		return u.Upstream.GetBlob(ctx, registry, repo, d)
	}
	if release != nil {
		if body, size, ok := u.storedMeanwhile(ctx, registry, repo, d); ok {
			release()
			return body, size, nil
		}
		return u.holderGet(ctx, registry, repo, d, release)
	}
	size, err := u.Upstream.HeadBlob(ctx, registry, repo, d)
	if err != nil {
		return nil, -1, err
	}
	if size < 0 {
		// A HEAD 200 without a size does not confirm that this repository has the digest
		// (the holder may be filling it for another one): this repository's own bytes come
		// from upstream, uncoordinated.
		u.log.Debug("upstream HEAD gave no size; not following the fill of another replica", "digest", d.String(), "holder", addr)
		return u.Upstream.GetBlob(ctx, registry, repo, d)
	}
	u.log.Debug("following the fill of another replica", "digest", d.String(), "holder", addr)
	return &peerBody{u: u, ctx: ctx, registry: registry, repo: repo, d: d, size: size, addr: addr}, size, nil
}

// storedMeanwhile returns the stored object when another replica stored d between this
// replica's look at the store (a miss) and its taking the lease (released by the holder once
// the blob was stored): a small blob is filled in milliseconds, and the replicas of a stampede
// ask for it at the same moment. Without this look, that replica fetched it from upstream a
// second time. As for a follower, upstream's HEAD must confirm that repo has d with the
// stored size (repository scoping); the cache verifies the digest of the bytes as it reads
// them, and writes nothing (the object is already there).
func (u *Upstream) storedMeanwhile(ctx context.Context, registry, repo string, d v1.Hash) (io.ReadCloser, int64, bool) {
	if u.store == nil {
		return nil, -1, false
	}
	size, err := u.store.Stat(ctx, d)
	if err != nil {
		// Not stored (or the store cannot say): fetch it.
		return nil, -1, false
	}
	upSize, err := u.Upstream.HeadBlob(ctx, registry, repo, d)
	if err != nil || upSize != size {
		// Unconfirmed: upstream's own bytes (GET) decide, verified as always.
		return nil, -1, false
	}
	rc, err := u.store.Open(ctx, d, 0, -1)
	if err != nil {
		return nil, -1, false
	}
	u.log.Debug("blob stored by another replica while this one took the lease; reading it from the store", "digest", d.String())
	return &storedBody{ReadCloser: rc}, size, true
}

// storedBody is a blob read from the shared store: the cache does not write it again.
type storedBody struct{ io.ReadCloser }

// StoredElsewhere tells the cache that the object is already in the store (cache.StoredElsewhere).
func (storedBody) StoredElsewhere() bool { return true }

func (u *Upstream) holderGet(ctx context.Context, registry, repo string, d v1.Hash, release func()) (io.ReadCloser, int64, error) {
	body, size, err := u.Upstream.GetBlob(ctx, registry, repo, d)
	if err != nil {
		release()
		return nil, -1, err
	}
	return &releasingBody{ReadCloser: body, release: release}, size, nil
}

// releasingBody gives up the lease when the fill is done with the body: the cache closes it
// after the blob is committed (or the fill failed).
type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

// peerBody reads a blob from the replica holding its fill, and on a break carries on from the
// same offset wherever the bytes now are.
type peerBody struct {
	u        *Upstream
	ctx      context.Context
	registry string
	repo     string
	d        v1.Hash
	size     int64
	addr     string

	cur  io.ReadCloser
	read int64
	// failingSince is when the current run of failures against live holders began.
	failingSince time.Time
}

func (b *peerBody) Read(p []byte) (int, error) {
	for {
		if b.cur == nil {
			if err := b.connect(); err != nil {
				return 0, err
			}
		}
		n, err := b.cur.Read(p)
		b.read += int64(n)
		if n > 0 {
			b.failingSince = time.Time{}
		}
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, io.EOF) && (b.size < 0 || b.read >= b.size):
			return n, io.EOF
		case b.addr == "upstream":
			// This replica's own fetch failed: the fill fails as a direct one would.
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("reading %s from upstream after %d bytes: %w", b.d, b.read, err)
		}
		// The holder's stream broke (or ended early): find the bytes elsewhere.
		b.u.log.Info("fill stream broke; resuming", "digest", b.d.String(), "offset", b.read, "from", b.addr, "error", err.Error())
		_ = b.cur.Close()
		b.cur = nil
		b.addr = ""
		if n > 0 {
			return n, nil
		}
	}
}

// connect opens the next source of bytes from b.read on: the current holder's fill
// endpoint, or upstream once this replica holds the lease (or the holders keep failing).
func (b *peerBody) connect() error {
	backoff := 100 * time.Millisecond
	for {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		if b.addr == "" {
			release, addr, err := b.u.coord.Acquire(b.ctx, b.d.String())
			switch {
			case err != nil:
				b.u.log.Warn("fill lease unavailable; resuming from upstream", "digest", b.d.String(), "error", err.Error())
				return b.fromUpstream(func() {})
			case release != nil:
				b.u.log.Info("took over a fill", "digest", b.d.String(), "offset", b.read)
				return b.fromUpstream(release)
			}
			b.addr = addr
		}
		err := b.fromPeer()
		if err == nil {
			return nil
		}
		if b.failingSince.IsZero() {
			b.failingSince = time.Now()
		}
		if errors.Is(err, errPeerRefused) || time.Since(b.failingSince) > 2*b.u.coord.ttl {
			// A holder that stays alive but cannot serve (bad secret, unreachable address):
			// do not wait for it forever.
			b.u.log.Error("cannot read the fill of the replica holding its lease; fetching from upstream", "digest", b.d.String(), "holder", b.addr, "error", err.Error())
			return b.fromUpstream(func() {})
		}
		b.u.log.Debug("holder not answering; asking again", "digest", b.d.String(), "holder", b.addr, "error", err.Error())
		b.addr = ""
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (b *peerBody) fromPeer() error {
	u := url.URL{Scheme: b.u.scheme, Host: b.addr, Path: FillPath + b.d.String(), RawQuery: "offset=" + strconv.FormatInt(b.read, 10)}
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("fill request to %s: %w", b.addr, err)
	}
	req.Header.Set("Authorization", "Bearer "+b.u.secret)
	resp, err := b.u.client.Do(req)
	if err != nil {
		return fmt.Errorf("fill request to %s: %w", b.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("%w (%s)", errPeerRefused, b.addr)
		}
		return fmt.Errorf("fill request to %s: status %d", b.addr, resp.StatusCode)
	}
	if got := resp.Header.Get(SizeHeader); b.size >= 0 && got != strconv.FormatInt(b.size, 10) {
		_ = resp.Body.Close()
		return fmt.Errorf("fill request to %s: size %q, want %d", b.addr, got, b.size)
	}
	b.cur = resp.Body
	return nil
}

// fromUpstream continues from upstream. Upstream is read from the start (the cache's upstream
// client has no ranges) and the bytes this body already returned are skipped; the cache's
// digest check covers the joined stream.
func (b *peerBody) fromUpstream(release func()) error {
	body, size, err := b.u.Upstream.GetBlob(b.ctx, b.registry, b.repo, b.d)
	if err != nil {
		release()
		return err
	}
	if size >= 0 && b.size >= 0 && size != b.size {
		_ = body.Close()
		release()
		return fmt.Errorf("upstream now announces %d bytes for %s, HEAD said %d", size, b.d, b.size)
	}
	if b.u.store != nil {
		// This replica now owes the store the object: it writes all of upstream's bytes, the
		// skipped ones included, and commits only a verified whole.
		body = b.u.storing(b.ctx, body, b.d)
	}
	if _, err := io.CopyN(io.Discard, body, b.read); err != nil {
		_ = body.Close()
		release()
		return fmt.Errorf("skipping %d bytes of %s from upstream: %w", b.read, b.d, err)
	}
	b.cur = &releasingBody{ReadCloser: body, release: release}
	b.addr = "upstream"
	return nil
}

// StoredElsewhere tells the cache not to write this body to the store: when it ends cleanly,
// the holder (or this body, after a takeover) has committed the object (cache.StoredElsewhere).
func (b *peerBody) StoredElsewhere() bool { return b.u.store != nil }

func (b *peerBody) Close() error {
	if b.cur != nil {
		return b.cur.Close()
	}
	return nil
}

// storing tees body into a new object for d, verified and committed when body ends. Without
// a writer (the store refused), it only passes the bytes on: the cache then finds no object
// and serves them uncached.
func (u *Upstream) storing(ctx context.Context, body io.ReadCloser, d v1.Hash) io.ReadCloser {
	w, err := u.store.Create(ctx, d)
	if err != nil {
		u.log.Warn("cannot store a taken-over fill; passing it through", "digest", d.String(), "error", err.Error())
		return body
	}
	return &storingBody{ctx: ctx, body: body, w: w, h: sha256.New(), d: d, log: u.log}
}

type storingBody struct {
	ctx  context.Context
	body io.ReadCloser
	w    blobstore.Writer
	h    hash.Hash
	d    v1.Hash
	log  *slog.Logger
}

func (s *storingBody) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if s.w == nil {
		return n, err
	}
	if n > 0 {
		s.h.Write(p[:n])
		if _, werr := s.w.Write(p[:n]); werr != nil {
			s.giveUp("write", werr)
			return n, err
		}
	}
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(s.h.Sum(nil)); got != s.d.Hex {
			// The cache's own check fails the fill too; nothing is committed.
			s.giveUp("verify", fmt.Errorf("upstream bytes have digest sha256:%s", got))
			return n, err
		}
		if cerr := s.w.Commit(s.ctx); cerr != nil {
			s.giveUp("commit", cerr)
			return n, err
		}
		s.w = nil
	}
	return n, err
}

// giveUp abandons the object: the bytes still reach the cache, which serves them uncached.
func (s *storingBody) giveUp(step string, err error) {
	s.log.Warn("storing a taken-over fill failed; passing it through", "digest", s.d.String(), "step", step, "error", err.Error())
	_ = s.w.Cancel(context.WithoutCancel(s.ctx))
	s.w = nil
}

func (s *storingBody) Close() error {
	if s.w != nil {
		_ = s.w.Cancel(context.WithoutCancel(s.ctx))
	}
	return s.body.Close()
}

// LeaseManifest takes the lease on a manifest fetch (cache.ManifestLeaser): the cache then
// fetches a cold manifest on one replica, and the others wait for it to appear in the shared
// metadata. The lease is renewed until release is called.
func (u *Upstream) LeaseManifest(ctx context.Context, key string) (func(), error) {
	release, _, err := u.coord.Acquire(ctx, key)
	return release, err
}

var _ cache.ManifestLeaser = (*Upstream)(nil)
