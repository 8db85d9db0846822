package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ManifestTypes are the manifest media types asked for and accepted: OCI index and
// manifest, Docker manifest list and schema 2. Docker schema 1 is not supported.
var ManifestTypes = []string{
	string(types.OCIImageIndex),
	string(types.OCIManifestSchema1),
	string(types.DockerManifestList),
	string(types.DockerManifestSchema2),
}

// ErrUnsupportedManifest is wrapped by ManifestMediaType's errors.
var ErrUnsupportedManifest = errors.New("unsupported manifest")

// IsManifestType reports whether mt is one of ManifestTypes.
func IsManifestType(mt string) bool {
	for _, t := range ManifestTypes {
		if mt == t {
			return true
		}
	}
	return false
}

// HeaderMediaType is the media type of a Content-Type header, without parameters.
func HeaderMediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.TrimSpace(ct)
	}
	return mt
}

// ManifestMediaType decides a manifest's media type: the Content-Type when it is a manifest
// type, else the body's mediaType field, else its shape (OCI manifests may omit mediaType).
// This is the one media-type sniffer.
func ManifestMediaType(contentType string, body []byte) (string, error) {
	if mt := HeaderMediaType(contentType); IsManifestType(mt) {
		return mt, nil
	}
	var m struct {
		MediaType     string          `json:"mediaType"`
		SchemaVersion json.RawMessage `json:"schemaVersion"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
		Layers        json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", fmt.Errorf("%w: manifest is not JSON (Content-Type %q)", ErrUnsupportedManifest, contentType)
	}
	switch {
	case IsManifestType(m.MediaType):
		return m.MediaType, nil
	case m.MediaType != "":
		return "", fmt.Errorf("%w: media type %q", ErrUnsupportedManifest, m.MediaType)
	case string(m.SchemaVersion) == "2" && m.Manifests != nil:
		return string(types.OCIImageIndex), nil
	case string(m.SchemaVersion) == "2" && m.Config != nil && m.Layers != nil:
		return string(types.OCIManifestSchema1), nil
	}
	return "", fmt.Errorf("%w: Content-Type %q, schemaVersion %s", ErrUnsupportedManifest, contentType, strconv.Quote(string(m.SchemaVersion)))
}
