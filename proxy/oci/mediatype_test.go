package oci

import (
	"errors"
	"testing"
)

func TestManifestMediaType(t *testing.T) {
	tests := []struct {
		name, contentType, body, want string
		unsupported                   bool
	}{
		{name: "a manifest Content-Type wins", contentType: "application/vnd.oci.image.index.v1+json; charset=utf-8", body: `{}`, want: "application/vnd.oci.image.index.v1+json"},
		{name: "the body's mediaType is used without a Content-Type", body: `{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}`, want: "application/vnd.docker.distribution.manifest.v2+json"},
		{name: "an OCI index is known by its manifests", body: `{"schemaVersion":2,"manifests":[]}`, want: "application/vnd.oci.image.index.v1+json"},
		{name: "an OCI manifest is known by config and layers", body: `{"schemaVersion":2,"config":{},"layers":[]}`, want: "application/vnd.oci.image.manifest.v1+json"},
		{name: "schema 1 is refused", body: `{"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}`, unsupported: true},
		{name: "a body that is not JSON is refused", contentType: "text/html", body: `<html>`, unsupported: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ManifestMediaType(tc.contentType, []byte(tc.body))
			if tc.unsupported {
				if !errors.Is(err, ErrUnsupportedManifest) {
					t.Fatalf("ManifestMediaType = %q, %v; want ErrUnsupportedManifest", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ManifestMediaType = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
