package pulls

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// pullTimes is when one client's pull reached each step, measured from the stampede's start.
type pullTimes struct {
	replica  int
	manifest time.Duration
	// first and last byte of each layer (the config is small and left out).
	first, last []time.Duration
}

// timedPull pulls repo:v1 like regClient.pull and records when each step ended; without
// verify it checks sizes only (hashing 100 copies would take the CPU the servers need on two
// cores).
func timedPull(ctx context.Context, c *regClient, repo string, verify bool, start time.Time, t *pullTimes) error {
	m, _, err := c.manifest(ctx, repo, "v1")
	if err != nil {
		return err
	}
	t.manifest = time.Since(start)
	blobs := append([]v1.Descriptor{m.Config}, m.Layers...)
	t.first = make([]time.Duration, len(m.Layers))
	t.last = make([]time.Duration, len(m.Layers))
	errs := make([]error, len(blobs))
	var wg sync.WaitGroup
	for i, d := range blobs {
		wg.Go(func() {
			var first, last *time.Duration
			if i > 0 {
				first, last = &t.first[i-1], &t.last[i-1]
			}
			errs[i] = timedBlob(ctx, c, repo, d, verify, start, first, last)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func timedBlob(ctx context.Context, c *regClient, repo string, d v1.Descriptor, verify bool, start time.Time, first, last *time.Duration) error {
	resp, err := c.do(ctx, http.MethodGet, repo, "blobs/"+d.Digest.String())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET blob %s: %s", d.Digest, resp.Status)
	}
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, rerr := resp.Body.Read(buf)
		if k > 0 && n == 0 && first != nil {
			*first = time.Since(start)
		}
		n += int64(k)
		if verify {
			h.Write(buf[:k])
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("GET blob %s: %w", d.Digest, rerr)
		}
	}
	if last != nil {
		*last = time.Since(start)
	}
	if n != d.Size {
		return fmt.Errorf("GET blob %s: %d bytes, want %d", d.Digest, n, d.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); verify && got != d.Digest.Hex {
		return fmt.Errorf("GET blob %s: body has digest sha256:%s", d.Digest, got)
	}
	return nil
}

// replicaTimes sums up one replica's clients in one stampede: the latest manifest, the
// earliest and latest first byte of any layer, and the latest last byte.
type replicaTimes struct {
	replica                     int
	clients                     int
	manifest                    time.Duration
	firstMin, firstMax, lastMax time.Duration
	lastMedian                  time.Duration
}

// breakdown groups the clients' times by replica, the replica whose clients got the manifest
// first (the one that fetched it: the leader) first.
func breakdown(ts []pullTimes, replicas int) []replicaTimes {
	out := make([]replicaTimes, replicas)
	lasts := make([][]time.Duration, replicas)
	for i := range out {
		out[i] = replicaTimes{replica: i, manifest: -1, firstMin: -1}
	}
	for _, t := range ts {
		r := &out[t.replica]
		r.clients++
		r.manifest = max(r.manifest, t.manifest)
		var last time.Duration
		for i := range t.first {
			if r.firstMin < 0 || t.first[i] < r.firstMin {
				r.firstMin = t.first[i]
			}
			r.firstMax = max(r.firstMax, t.first[i])
			last = max(last, t.last[i])
		}
		r.lastMax = max(r.lastMax, last)
		lasts[t.replica] = append(lasts[t.replica], last)
	}
	for i := range out {
		if l := lasts[i]; len(l) > 0 {
			slices.Sort(l)
			out[i].lastMedian = l[len(l)/2]
		}
	}
	slices.SortStableFunc(out, func(a, b replicaTimes) int { return int(a.manifest - b.manifest) })
	return out
}

func (r replicaTimes) String() string {
	ms := func(d time.Duration) string { return fmt.Sprint(d.Milliseconds()) }
	return fmt.Sprintf("replica %d (%d clients): manifest %s ms, layers' first byte %s–%s ms, pull done median %s max %s ms",
		r.replica, r.clients, ms(r.manifest), ms(r.firstMin), ms(r.firstMax), ms(r.lastMedian), ms(r.lastMax))
}

func formatBreakdown(rs []replicaTimes) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		role := "follower"
		if i == 0 {
			role = "leader"
		}
		parts[i] = role + " " + r.String()
	}
	return strings.Join(parts, "; ")
}
