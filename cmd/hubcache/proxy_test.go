package main

import (
	"testing"
)

func TestUpstreamFlagsAreParsedStrictly(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   map[string]string
		bad    bool
	}{
		{"the default", []string{"docker.io=https://registry-1.docker.io"}, map[string]string{"docker.io": "https://registry-1.docker.io"}, false},
		{"a Docker Hub alias is docker.io", []string{"index.docker.io=https://mirror.example"}, map[string]string{"docker.io": "https://mirror.example"}, false},
		{"several in one value, as in the environment", []string{"docker.io=https://a.example,ghcr.io=https://ghcr.io"}, map[string]string{"docker.io": "https://a.example", "ghcr.io": "https://ghcr.io"}, false},
		{"plain http when written so", []string{"localhost:5001=http://127.0.0.1:5001"}, map[string]string{"localhost:5001": "http://127.0.0.1:5001"}, false},
		{"no URL", []string{"docker.io"}, nil, true},
		{"not http", []string{"docker.io=ftp://x"}, nil, true},
		{"no host", []string{"docker.io=https://"}, nil, true},
		{"a registry twice", []string{"docker.io=https://a.example", "registry-1.docker.io=https://b.example"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUpstreams(tc.values)
			if tc.bad {
				if err == nil {
					t.Fatalf("accepted %v", tc.values)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for reg, u := range tc.want {
				if got[reg] == nil || got[reg].String() != u {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestTheProxyCommandHasEveryDocumentedFlag(t *testing.T) {
	cmd := newProxyCmd()
	for _, f := range []string{"listen", "metrics-listen", "data-dir", "upstream", "docker-config", "tag-ttl",
		"fill-timeout", "upstream-timeout", "max-manifest-size", "log-level", "shutdown-timeout"} {
		if cmd.Flags().Lookup(f) == nil {
			t.Errorf("no --%s", f)
		}
	}
	if got := cmd.Flags().Lookup("listen").DefValue; got != "127.0.0.1:5000" {
		t.Errorf("--listen defaults to %s", got)
	}
}
