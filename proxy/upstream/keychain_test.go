package upstream

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func writeDockerConfig(t *testing.T, key string) string {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	body := `{"auths":{"` + key + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestTheKeychainFindsCredentialsUnderEveryAliasKey(t *testing.T) {
	tests := []struct {
		name, key, target string
		found             bool
	}{
		{"Docker's historical key serves docker.io", "https://index.docker.io/v1/", "docker.io/library/nginx", true},
		{"the docker.io key serves docker.io", "docker.io", "docker.io/library/nginx", true},
		{"the index.docker.io key serves docker.io", "index.docker.io", "docker.io/library/nginx", true},
		{"the registry-1.docker.io key serves docker.io", "registry-1.docker.io", "docker.io/library/nginx", true},
		{"a docker.io key serves the registry-1.docker.io API host", "docker.io", "registry-1.docker.io/library/nginx", true},
		{"a URL key serves its host", "https://ghcr.io", "ghcr.io/acme/app", true},
		{"a Docker Hub key does not serve another registry", "docker.io", "ghcr.io/acme/app", false},
		{"another registry's key does not serve Docker Hub", "ghcr.io", "docker.io/library/nginx", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kc := DockerConfigKeychain(writeDockerConfig(t, tc.key))
			repo, err := name.NewRepository(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			auth, err := Authenticate(kc, repo.RegistryStr(), repo)
			if err != nil {
				t.Fatal(err)
			}
			if found := auth != authn.Anonymous; found != tc.found {
				t.Fatalf("credentials found: %v, want %v", found, tc.found)
			}
			if !tc.found {
				return
			}
			cfg, err := auth.Authorization()
			if err != nil || cfg.Username != "alice" || cfg.Password != "s3cret" {
				t.Fatalf("Authorization = %+v, %v; want alice", cfg, err)
			}
		})
	}
}

func TestTheKeychainIsAnonymousWithoutAConfigFile(t *testing.T) {
	repo, _ := name.NewRepository("docker.io/library/nginx")
	auth, err := Authenticate(DockerConfigKeychain(t.TempDir()), "docker.io", repo)
	if err != nil || auth != authn.Anonymous {
		t.Fatalf("Authenticate = %v, %v; want anonymous", auth, err)
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
