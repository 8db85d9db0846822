package fillcoord_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/fillcoord"
	"github.com/hubcache/hubcache/proxy/metadata/postgres"
	"github.com/hubcache/hubcache/test/pgtest"
)

// freshSchema creates a schema dropped when the test ends and returns a DSN selecting it.
func freshSchema(t *testing.T) string {
	t.Helper()
	dsn, _ := pgtest.Schema(t, "hubcache_test_")
	// The metadata store's migrations create fill_leases.
	meta, err := postgres.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	meta.Close()
	return dsn
}

func newCoord(t *testing.T, dsn, holder string, ttl time.Duration) *fillcoord.Coordinator {
	t.Helper()
	c, err := fillcoord.New(t.Context(), dsn, holder, holder+":5000", fillcoord.WithTTL(ttl))
	if err != nil {
		t.Fatalf("New(%s): %v", holder, err)
	}
	t.Cleanup(c.Close)
	return c
}

const digest = "sha256:0000000000000000000000000000000000000000000000000000000000000001"

func TestOneOfManyReplicasGetsTheLeaseAndTheOthersLearnWhereItIs(t *testing.T) {
	dsn := freshSchema(t)
	const n = 5
	coords := make([]*fillcoord.Coordinator, n)
	var wg sync.WaitGroup
	for i := range n {
		// Replicas starting together all create the table without error.
		wg.Go(func() {
			c, err := fillcoord.New(t.Context(), dsn, "r"+string(rune('a'+i)), "r"+string(rune('a'+i))+":5000")
			if err != nil {
				t.Errorf("New: %v", err)
				return
			}
			coords[i] = c
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, c := range coords {
		t.Cleanup(c.Close)
	}
	releases := make([]func(), n)
	addrs := make([]string, n)
	for i, c := range coords {
		wg.Go(func() {
			rel, addr, err := c.Acquire(t.Context(), digest)
			if err != nil {
				t.Errorf("Acquire: %v", err)
			}
			releases[i], addrs[i] = rel, addr
		})
	}
	wg.Wait()
	holder := -1
	for i, rel := range releases {
		if rel != nil {
			if holder >= 0 {
				t.Fatalf("replicas %d and %d both hold the lease", holder, i)
			}
			holder = i
		}
	}
	if holder < 0 {
		t.Fatal("nobody got the lease")
	}
	for i, a := range addrs {
		if i != holder && a != coords[holder].Addr() {
			t.Errorf("replica %d was told the holder is at %q, want %q", i, a, coords[holder].Addr())
		}
	}
	releases[holder]()
	other := coords[(holder+1)%n]
	rel, _, err := other.Acquire(t.Context(), digest)
	if err != nil || rel == nil {
		t.Fatalf("after release another replica could not take the lease (err %v)", err)
	}
	rel()
}

func TestARenewedLeaseOutlivesItsTTLAndAnAbandonedOneIsTakenOver(t *testing.T) {
	dsn := freshSchema(t)
	a := newCoord(t, dsn, "a", time.Second)
	b := newCoord(t, dsn, "b", time.Second)
	release, _, err := a.Acquire(t.Context(), digest)
	if err != nil || release == nil {
		t.Fatalf("a could not take the lease: %v", err)
	}
	// Several TTLs later a still holds it: its renewals keep it alive.
	time.Sleep(2500 * time.Millisecond)
	if rel, addr, err := b.Acquire(t.Context(), digest); err != nil || rel != nil || addr != "a:5000" {
		t.Fatalf("b.Acquire while a renews = (%v, %q, %v), want the holder a:5000", rel != nil, addr, err)
	}
	// a "dies": its pool goes away without a release, so nobody renews the lease.
	a.Close()
	var rel func()
	for rel == nil {
		if t.Context().Err() != nil {
			t.Fatal("the abandoned lease was never taken over")
		}
		time.Sleep(100 * time.Millisecond)
		rel, _, err = b.Acquire(t.Context(), digest)
		if err != nil {
			t.Fatalf("b.Acquire: %v", err)
		}
	}
	rel()
}

func TestBadSettingsAreRefused(t *testing.T) {
	cases := []struct {
		name        string
		dsn, holder string
		addr        string
		opts        []fillcoord.Option
	}{
		{name: "a holder without a name", dsn: pgtest.BaseDSN(), addr: "x:1"},
		{name: "a holder without an address", dsn: pgtest.BaseDSN(), holder: "x"},
		{name: "a TTL under a second", dsn: pgtest.BaseDSN(), holder: "x", addr: "x:1", opts: []fillcoord.Option{fillcoord.WithTTL(time.Millisecond)}},
		{name: "a DSN that does not parse, without echoing it", dsn: "postgres://u:secret@[::1", holder: "x", addr: "x:1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fillcoord.New(t.Context(), tc.dsn, tc.holder, tc.addr, tc.opts...)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}
