package server

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
