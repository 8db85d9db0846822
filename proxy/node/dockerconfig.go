package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/hubcache/hubcache/proxy/imageref"
)

// DockerConfigKeychain resolves credentials from the "auths" section of DIR/config.json
// (the format of a kubernetes.io/dockerconfigjson Secret). The file is read on every
// resolve, so a rotated Secret is picked up; a missing file means anonymous access.
// Credential helpers (credsStore, credHelpers) are not supported: nothing runs them on a
// node.
//
// Keys match by registry host, with Docker Hub's aliases (and its historical key
// "https://index.docker.io/v1/") all meaning docker.io.
func DockerConfigKeychain(dir string) authn.Keychain {
	return dockerConfig{path: filepath.Join(dir, "config.json")}
}

type dockerConfig struct{ path string }

type dockerConfigFile struct {
	Auths map[string]authn.AuthConfig `json:"auths"`
}

func (d dockerConfig) Resolve(target authn.Resource) (authn.Authenticator, error) {
	b, err := os.ReadFile(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("docker config: %w", err)
	}
	var f dockerConfigFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("docker config %s: %w", d.path, err)
	}
	want := imageref.CanonicalRegistry(target.RegistryStr())
	for key, cfg := range f.Auths {
		if configKeyRegistry(key) == want {
			return authn.FromConfig(cfg), nil
		}
	}
	return authn.Anonymous, nil
}

// configKeyRegistry reads a config.json key ("https://index.docker.io/v1/", "ghcr.io",
// "http://127.0.0.1:5000") as a canonical registry name.
func configKeyRegistry(key string) string {
	k := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	k, _, _ = strings.Cut(k, "/")
	return imageref.CanonicalRegistry(strings.ToLower(k))
}
