package server

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestImageSeriesAreBoundedWithAnOtherBucket(t *testing.T) {
	p, err := newPullMetrics(prometheus.NewRegistry(), 3)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for i := range 100 {
		got[p.repositoryLabel(fmt.Sprintf("docker.io/library/img%d", i%10))]++
	}
	if len(got) != 4 || got[otherImages] != 70 {
		t.Errorf("labels %v: want the first 3 repositories and %q for the other 7", got, otherImages)
	}
	for _, repo := range []string{"docker.io/library/img0", "docker.io/library/img1", "docker.io/library/img2"} {
		if got[repo] != 10 {
			t.Errorf("%s counted %d times under its own label, want 10", repo, got[repo])
		}
	}
}

func TestPullsAvoidedFollowClientGetsMinusUpstreamGets(t *testing.T) {
	p, err := newPullMetrics(prometheus.NewRegistry(), DefaultTopImages)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		what    string
		do      func()
		avoided float64
	}{
		// containerd on a cold cache: the HEAD of the tag makes the upstream GET, the GET by
		// digest that follows is a hit. Docker Hub counted that pull.
		{"HEAD fetched upstream", p.upstreamGot, 0},
		{"GET by digest, a hit", p.clientGot, 0},
		// The same pull again, warm: nothing upstream.
		{"warm GET", p.clientGot, 1},
		// A cold GET by tag: the upstream GET is made for it.
		{"cold GET: upstream", p.upstreamGot, 1},
		{"cold GET: answered", p.clientGot, 1},
		// An upstream GET no client GET matched (a HEAD nobody followed) is taken off the
		// next hit; the counter never goes down.
		{"unmatched upstream GET", p.upstreamGot, 1},
		{"hit pays it back", p.clientGot, 1},
		{"next hit counts", p.clientGot, 2},
	}
	for _, st := range steps {
		st.do()
		if got := testutil.ToFloat64(p.avoided); got != st.avoided {
			t.Fatalf("after %s: pulls avoided %v, want %v", st.what, got, st.avoided)
		}
	}
}
