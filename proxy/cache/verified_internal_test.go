package cache

import (
	"fmt"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestTheRememberedVersionsStayUnderTheirCap(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := newVerifiedReads(time.Hour, func() time.Time { return now })
	hash := func(i int) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064x", i)} }
	for i := range maxVerified + 1000 {
		v.record(hash(i), "v")
		if len(v.m) > maxVerified {
			t.Fatalf("after %d records the map holds %d, over the cap %d", i+1, len(v.m), maxVerified)
		}
		if !v.fresh(hash(i), "v") {
			t.Fatalf("record %d is not remembered right after it was made", i)
		}
	}
	// Expired entries go first: after the interval, new records until the map is full
	// again all survive the next clean-up.
	now = now.Add(time.Hour)
	var fresh []v1.Hash
	for i := 0; len(fresh) == 0 || len(v.m) > 1; i++ {
		d := hash(1<<30 + i)
		before := len(v.m)
		v.record(d, "v")
		fresh = append(fresh, d)
		if len(v.m) < before {
			break // the clean-up ran
		}
	}
	for _, d := range fresh {
		if !v.fresh(d, "v") {
			t.Fatalf("a record made after the interval was dropped while expired ones were kept")
		}
	}
	if len(v.m) != len(fresh) {
		t.Fatalf("after the clean-up the map holds %d, want only the %d new records", len(v.m), len(fresh))
	}
}
