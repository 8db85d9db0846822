package upstream

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/hubcache/hubcache/proxy/imageref"
)

// DefaultDockerConfigDir is $DOCKER_CONFIG, else ~/.docker ("" when neither is known).
func DefaultDockerConfigDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker")
}

// DockerConfigKeychain reads credentials from dir/config.json (credential helpers included)
// each time it resolves, so rotated credentials are picked up when a repository's transport
// is next built. A missing file means anonymous access. It is the one keychain of the proxy
// and the node (a kubernetes.io/dockerconfigjson Secret mounted as dir works as is).
//
// Docker Hub credentials are found under any of its keys: Docker's historical
// "https://index.docker.io/v1/", "docker.io", "index.docker.io" or "registry-1.docker.io".
func DockerConfigKeychain(dir string) authn.Keychain {
	return dockerConfigKeychain{dir: dir}
}

type dockerConfigKeychain struct{ dir string }

func (k dockerConfigKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	if k.dir == "" {
		return authn.Anonymous, nil
	}
	cf, err := config.Load(k.dir)
	if err != nil {
		return nil, fmt.Errorf("reading docker config in %s: %w", k.dir, err)
	}
	// Credential helpers and Docker's own key normalisation first.
	for _, key := range configKeys(target) {
		cfg, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s from %s: %w", key, k.dir, err)
		}
		if auth, ok := authenticator(cfg); ok {
			return auth, nil
		}
	}
	// Then any "auths" key that names the same registry once canonical: Docker maps
	// "docker.io" and "index.docker.io" lookups to its historical key only, so a Secret
	// written with "docker.io" as key would otherwise be ignored.
	want := imageref.CanonicalRegistry(strings.ToLower(target.RegistryStr()))
	for key, cfg := range cf.GetAuthConfigs() {
		if configKeyRegistry(key) != want {
			continue
		}
		if auth, ok := authenticator(cfg); ok {
			return auth, nil
		}
	}
	return authn.Anonymous, nil
}

func authenticator(cfg types.AuthConfig) (authn.Authenticator, bool) {
	cfg.ServerAddress = "" // set by GetAuthConfig even when nothing was found
	if cfg == (types.AuthConfig{}) {
		return nil, false
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      cfg.Username,
		Password:      cfg.Password,
		Auth:          cfg.Auth,
		IdentityToken: cfg.IdentityToken,
		RegistryToken: cfg.RegistryToken,
	}), true
}

// configKeyRegistry reads a config.json key ("https://index.docker.io/v1/", "ghcr.io",
// "http://127.0.0.1:5000") as a canonical registry name.
func configKeyRegistry(key string) string {
	k := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	k, _, _ = strings.Cut(k, "/")
	return imageref.CanonicalRegistry(strings.ToLower(k))
}

// dockerHubKeys are the config.json keys that hold Docker Hub credentials, the one Docker
// itself writes first.
var dockerHubKeys = []string{authn.DefaultAuthKey, "docker.io", "index.docker.io", "registry-1.docker.io"}

// configKeys are the config.json keys tried for target, most specific first.
func configKeys(target authn.Resource) []string {
	if imageref.IsDockerHub(strings.ToLower(target.RegistryStr())) {
		return dockerHubKeys
	}
	return []string{target.String(), target.RegistryStr()}
}
