package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersionPrintsTheCommitAndDateStampedAtBuildTime(t *testing.T) {
	oldV, oldC, oldD := version, commit, date
	t.Cleanup(func() { version, commit, date = oldV, oldC, oldD })
	version, commit, date = "v9.9.9", "0123456789abcdef", "2026-01-02T03:04:05Z"
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hubcache v9.9.9", "commit 0123456789abcdef", "built 2026-01-02T03:04:05Z"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output %q lacks %q", out.String(), want)
		}
	}
}

func TestEveryComponentExportsBuildInfoGoAndProcessMetrics(t *testing.T) {
	for _, component := range []string{"proxy", "node", "webhook"} {
		reg, err := newMetricsRegistry(component)
		if err != nil {
			t.Fatal(err)
		}
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, f := range fams {
			seen[f.GetName()] = true
			if f.GetName() != "hubcache_build_info" {
				continue
			}
			m := f.GetMetric()[0]
			if label(m, "component") != component || label(m, "version") == "" || label(m, "commit") == "" || m.GetGauge().GetValue() != 1 {
				t.Errorf("%s: hubcache_build_info %v", component, m)
			}
		}
		for _, want := range []string{"hubcache_build_info", "go_goroutines", "process_cpu_seconds_total"} {
			if !seen[want] {
				t.Errorf("%s: no %s", component, want)
			}
		}
	}
}
