package upstream

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
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
// is next built. A missing file means anonymous access.
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
	var empty types.AuthConfig
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			// Docker keeps Docker Hub credentials under this historical key.
			key = authn.DefaultAuthKey
		}
		cfg, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s from %s: %w", key, k.dir, err)
		}
		cfg.ServerAddress = "" // set by GetAuthConfig even when nothing was found
		if cfg != empty {
			return authn.FromConfig(authn.AuthConfig{
				Username:      cfg.Username,
				Password:      cfg.Password,
				Auth:          cfg.Auth,
				IdentityToken: cfg.IdentityToken,
				RegistryToken: cfg.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}
