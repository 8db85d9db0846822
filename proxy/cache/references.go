package cache

import (
	"encoding/json"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// references lists what a manifest points at: an index's manifests, or an image manifest's
// config and layers. Anything else (or unparsable JSON, which verification already allowed
// as upstream's verbatim bytes) references nothing.
func references(body []byte) []v1.Hash {
	var m struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
		Config *struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return nil
	}
	var raw []string
	for _, x := range m.Manifests {
		raw = append(raw, x.Digest)
	}
	if m.Config != nil {
		raw = append(raw, m.Config.Digest)
	}
	for _, x := range m.Layers {
		raw = append(raw, x.Digest)
	}
	seen := map[v1.Hash]bool{}
	var out []v1.Hash
	for _, s := range raw {
		h, err := v1.NewHash(s)
		if err != nil || seen[h] {
			continue
		}
		seen[h] = true
		out = append(out, h)
	}
	return out
}
