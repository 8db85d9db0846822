package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/sqlite"
	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
)

// pingFails is a real metadata store whose health check fails while down is set: the outage
// the readiness check sees.
type pingFails struct {
	metadata.Store
	down atomic.Bool
}

func (p *pingFails) Ping(ctx context.Context) error {
	if p.down.Load() {
		return errors.New("connection refused")
	}
	return p.Store.Ping(ctx)
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func readyz(t *testing.T, ops string) (int, string) {
	t.Helper()
	resp, err := http.Get(ops + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAStoreFailingPastTheGracePeriodMakesTheReplicaUnreadyUntilItAnswers(t *testing.T) {
	hub := fakehub.New(t)
	db, err := sqlite.New(context.Background(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	meta := &pingFails{Store: db}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv, _ := start(t, hub, server.WithMetadataStore(meta), server.WithClock(clk.now),
		server.WithUnreadyAfter(time.Minute), server.WithHealthInterval(0))
	ops := httptest.NewServer(srv.OpsHandler())
	t.Cleanup(ops.Close)

	steps := []struct {
		name       string
		down       bool
		advance    time.Duration
		wantCode   int
		wantStatus string
	}{
		{"both stores answer", false, 0, http.StatusOK, "ready"},
		{"the outage starts: degraded, still ready", true, 0, http.StatusOK, "degraded"},
		{"short of the grace period: still ready", true, 59 * time.Second, http.StatusOK, "degraded"},
		{"past the grace period: not ready", true, time.Second, http.StatusServiceUnavailable, "unready"},
		{"the store answers again: ready at once", false, 0, http.StatusOK, "ready"},
		{"a new outage gets a new grace period", true, 0, http.StatusOK, "degraded"},
	}
	for _, s := range steps {
		meta.down.Store(s.down)
		clk.add(s.advance)
		code, body := readyz(t, ops.URL)
		if code != s.wantCode || !strings.Contains(body, `"status":"`+s.wantStatus+`"`) {
			t.Errorf("%s: /readyz = %d %s, want %d %s", s.name, code, body, s.wantCode, s.wantStatus)
		}
	}
}

func TestADrainingReplicaFailsReadinessButKeepsServing(t *testing.T) {
	hub := fakehub.New(t)
	hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 1, 1000, true))
	srv, host := start(t, hub)
	ops := httptest.NewServer(srv.OpsHandler())
	t.Cleanup(ops.Close)
	if code, body := readyz(t, ops.URL); code != http.StatusOK {
		t.Fatalf("before draining /readyz = %d %s", code, body)
	}
	srv.Drain()
	if code, body := readyz(t, ops.URL); code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"draining"`) {
		t.Errorf("draining /readyz = %d %s, want 503 draining", code, body)
	}
	pullAll(t, host+"/docker.io/library/app:v1")
}
