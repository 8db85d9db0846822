package node

import "testing"

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		name, in, registry, url string
		wantErr                 bool
	}{
		{name: "Docker Hub by its registry API host", in: "docker.io=https://registry-1.docker.io", registry: "docker.io", url: "https://registry-1.docker.io"},
		{name: "an alias is canonicalised", in: "index.docker.io=https://registry-1.docker.io", registry: "docker.io", url: "https://registry-1.docker.io"},
		{name: "a trailing slash is fine", in: "ghcr.io=https://ghcr.io/", registry: "ghcr.io", url: "https://ghcr.io"},
		{name: "plain http is allowed for in-cluster registries", in: "docker.io=http://127.0.0.1:5001", registry: "docker.io", url: "http://127.0.0.1:5001"},
		{name: "no equals sign is an error", in: "docker.io", wantErr: true},
		{name: "a path is an error", in: "docker.io=https://example.com/v2", wantErr: true},
		{name: "credentials in the URL are an error", in: "docker.io=https://u:p@example.com", wantErr: true},
		{name: "another scheme is an error", in: "docker.io=ftp://example.com", wantErr: true},
		{name: "an invalid registry name is an error", in: "a/b=https://example.com", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseUpstream(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseUpstream(%q) = %v; want an error", tc.in, u)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseUpstream(%q): %v", tc.in, err)
			}
			if u.Registry != tc.registry || u.URL.String() != tc.url {
				t.Fatalf("ParseUpstream(%q) = %s %s; want %s %s", tc.in, u.Registry, u.URL, tc.registry, tc.url)
			}
		})
	}
}

func TestConfigKeysMatchByCanonicalRegistry(t *testing.T) {
	tests := map[string]string{
		"https://index.docker.io/v1/": "docker.io",
		"docker.io":                   "docker.io",
		"registry-1.docker.io":        "docker.io",
		"https://ghcr.io":             "ghcr.io",
		"http://127.0.0.1:5000/x":     "127.0.0.1:5000",
		"Quay.IO":                     "quay.io",
	}
	for key, want := range tests {
		if got := configKeyRegistry(key); got != want {
			t.Errorf("configKeyRegistry(%q) = %q; want %q", key, got, want)
		}
	}
}
