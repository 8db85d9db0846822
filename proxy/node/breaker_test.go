package node

import (
	"testing"
	"time"
)

func TestBreakerOpensAfterThresholdAndProbesAfterCoolDown(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBreaker(2, 10*time.Second, func() time.Time { return now })

	step := func(what string, wantForward, wantProbe bool) bool {
		t.Helper()
		f, p := b.allow()
		if f != wantForward || p != wantProbe {
			t.Fatalf("%s: allow() = %v, %v; want %v, %v", what, f, p, wantForward, wantProbe)
		}
		return p
	}

	step("closed", true, false)
	if b.report(resultUnreachable, false, "refused") {
		t.Fatal("one failure below the threshold opened the breaker")
	}
	step("still closed after one failure", true, false)
	if !b.report(resultUnreachable, false, "refused") {
		t.Fatal("reaching the threshold did not open the breaker")
	}
	step("open within the cool-down", false, false)

	now = now.Add(10 * time.Second)
	probe := step("cool-down over: one probe", true, true)
	step("no second probe while one is out", false, false)
	if b.report(resultUnreachable, probe, "refused") {
		t.Fatal("a failed probe changed the state")
	}
	step("failed probe restarts the cool-down", false, false)

	now = now.Add(10 * time.Second)
	probe = step("next probe", true, true)
	b.report(resultUnknown, probe, "")
	probe = step("a probe whose client went away is retried", true, true)
	if !b.report(resultReachable, probe, "") {
		t.Fatal("a successful probe did not close the breaker")
	}
	step("closed again", true, false)
	if st := b.state(); st.Open || st.LastErr != "refused" {
		t.Fatalf("state = %+v", st)
	}
}

func TestBreakerCountsOnlyConsecutiveFailures(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBreaker(2, time.Second, func() time.Time { return now })
	b.report(resultUnreachable, false, "x")
	b.report(resultReachable, false, "")
	if b.report(resultUnreachable, false, "x") {
		t.Fatal("failures separated by a success opened the breaker")
	}
}
