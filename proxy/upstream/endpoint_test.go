package upstream

import "testing"

func TestParseEndpoint(t *testing.T) {
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
		{name: "spaces around the pair and an uppercase name are fine", in: " Docker.IO=https://registry-1.docker.io ", registry: "docker.io", url: "https://registry-1.docker.io"},
		{name: "a query is an error", in: "docker.io=https://example.com?x=1", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseEndpoint(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseEndpoint(%q) = %v; want an error", tc.in, u)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEndpoint(%q): %v", tc.in, err)
			}
			if u.Registry != tc.registry || u.URL.String() != tc.url {
				t.Fatalf("ParseEndpoint(%q) = %s %s; want %s %s", tc.in, u.Registry, u.URL, tc.registry, tc.url)
			}
		})
	}
}

func TestParseEndpointsSplitsCommasAndRefusesDuplicates(t *testing.T) {
	got, err := ParseEndpoints([]string{"docker.io=https://registry-1.docker.io,ghcr.io=https://ghcr.io", "quay.io=https://quay.io"})
	if err != nil || len(got) != 3 || got[1].Registry != "ghcr.io" {
		t.Fatalf("ParseEndpoints = %v, %v; want three endpoints", got, err)
	}
	if _, err := ParseEndpoints([]string{"docker.io=https://a.example", "index.docker.io=https://b.example"}); err == nil {
		t.Fatal("Docker Hub given twice under two aliases was accepted")
	}
}
