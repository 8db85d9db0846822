package node

import (
	"net/url"
	"strings"
	"testing"

	"github.com/hubcache/hubcache/proxy/oci"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseRoute(t *testing.T) {
	long := strings.Repeat("a", 250)
	tests := []struct {
		name     string
		target   string // path and query as the client sent them
		want     route  // compared on kind, registry, repository, reference
		status   int    // 0: valid
		code     string
		upstream string // the path that would be fetched upstream
	}{
		{name: "the ping is answered locally", target: "/v2/", want: route{kind: kindPing}},
		{name: "a rewritten manifest path names its registry", target: "/v2/docker.io/library/nginx/manifests/1.27",
			want: route{kind: kindManifest, registry: "docker.io", repository: "library/nginx", reference: "1.27"}, upstream: "/v2/library/nginx/manifests/1.27"},
		{name: "a Docker Hub alias is canonicalised", target: "/v2/index.docker.io/library/nginx/manifests/latest",
			want: route{kind: kindManifest, registry: "docker.io", repository: "library/nginx", reference: "latest"}},
		{name: "a blob path takes a digest", target: "/v2/docker.io/bitnami/redis/blobs/" + testDigest,
			want: route{kind: kindBlob, registry: "docker.io", repository: "bitnami/redis", reference: testDigest}, upstream: "/v2/bitnami/redis/blobs/" + testDigest},
		{name: "a manifest may be asked by digest", target: "/v2/ghcr.io/o/r/manifests/" + testDigest,
			want: route{kind: kindManifest, registry: "ghcr.io", repository: "o/r", reference: testDigest}},
		{name: "the mirror form with ns=docker.io means Docker Hub", target: "/v2/library/nginx/manifests/1.27?ns=docker.io",
			want: route{kind: kindManifest, registry: "docker.io", repository: "library/nginx", reference: "1.27"}},
		{name: "the mirror form without ns means Docker Hub", target: "/v2/library/nginx/blobs/" + testDigest,
			want: route{kind: kindBlob, registry: "docker.io", repository: "library/nginx", reference: testDigest}},
		{name: "the first of several ns parameters counts, as in the proxy", target: "/v2/o/r/manifests/v1?ns=ghcr.io&ns=quay.io",
			want: route{kind: kindManifest, registry: "ghcr.io", repository: "o/r", reference: "v1"}},
		{name: "the mirror form with another ns names that registry", target: "/v2/o/r/manifests/v1?ns=ghcr.io",
			want: route{kind: kindManifest, registry: "ghcr.io", repository: "o/r", reference: "v1"}},
		{name: "a registry with a port is a registry", target: "/v2/localhost:5001/a/manifests/v1",
			want: route{kind: kindManifest, registry: "localhost:5001", repository: "a", reference: "v1"}},
		{name: "a single component is a Docker Hub repository even with a dot", target: "/v2/foo.bar/manifests/v1",
			want: route{kind: kindManifest, registry: "docker.io", repository: "library/foo.bar", reference: "v1"}},

		{name: "dot-dot components are refused", target: "/v2/docker.io/library/../../etc/manifests/x", status: 400, code: oci.CodeNameInvalid},
		{name: "a dot-dot reference is refused", target: "/v2/docker.io/library/nginx/manifests/..", status: 400, code: oci.CodeNameInvalid},
		{name: "empty components are refused", target: "/v2/docker.io//nginx/manifests/x", status: 400, code: oci.CodeNameInvalid},
		{name: "encoded slashes are refused", target: "/v2/docker.io/library%2Fnginx/manifests/x", status: 400, code: oci.CodeNameInvalid},
		{name: "any percent-encoding is refused", target: "/v2/docker.io/library/ngin%78/manifests/x", status: 400, code: oci.CodeNameInvalid},
		{name: "an invalid blob digest is refused", target: "/v2/docker.io/library/nginx/blobs/sha256:abc", status: 400, code: oci.CodeDigestInvalid},
		{name: "an unknown digest algorithm is refused", target: "/v2/docker.io/library/nginx/blobs/md5:0123456789abcdef0123456789abcdef", status: 400, code: oci.CodeDigestInvalid},
		{name: "an invalid manifest digest is refused", target: "/v2/docker.io/library/nginx/manifests/sha256:XYZ", status: 400, code: oci.CodeDigestInvalid},
		{name: "a tag starting with a dot names no manifest", target: "/v2/docker.io/library/nginx/manifests/.hidden", status: 404, code: oci.CodeManifestUnknown},
		{name: "a sha512 digest is refused like the proxy does", target: "/v2/docker.io/library/nginx/blobs/sha512:" + strings.Repeat("a", 128), status: 400, code: oci.CodeDigestInvalid},
		{name: "uppercase repositories are refused", target: "/v2/docker.io/Library/nginx/manifests/x", status: 400, code: oci.CodeNameInvalid},
		{name: "names over 255 characters are refused", target: "/v2/docker.io/" + long + "/" + long + "/manifests/x", status: 400, code: oci.CodeNameInvalid},
		{name: "an invalid ns names no served registry", target: "/v2/library/nginx/manifests/x?ns=a/b", status: 404, code: oci.CodeNameUnknown},
		{name: "a one-component Docker Hub name gets library/", target: "/v2/docker.io/nginx/manifests/1.27",
			want: route{kind: kindManifest, registry: "docker.io", repository: "library/nginx", reference: "1.27"}},
		{name: "upload paths are refused as writes", target: "/v2/docker.io/library/nginx/blobs/uploads/x", status: 405, code: oci.CodeUnsupported},
		{name: "the upload start path is refused as a write", target: "/v2/docker.io/library/nginx/blobs/uploads/", status: 405, code: oci.CodeUnsupported},
		{name: "tag lists are not served", target: "/v2/docker.io/library/nginx/tags/list", status: 404, code: oci.CodeUnsupported},
		{name: "referrers are not served", target: "/v2/docker.io/library/nginx/referrers/" + testDigest, status: 404, code: oci.CodeUnsupported},
		{name: "the catalog is not served", target: "/v2/_catalog", status: 404, code: oci.CodeUnsupported},
		{name: "paths outside /v2/ are not served", target: "/etc/passwd", status: 404, code: oci.CodeUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.ParseRequestURI(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseRoute(u)
			if tc.status != 0 {
				re, ok := err.(*oci.Error)
				if !ok {
					t.Fatalf("parseRoute(%q) = %+v, %v; want a %d %s refusal", tc.target, got, err, tc.status, tc.code)
				}
				if re.Status != tc.status || re.Code != tc.code {
					t.Fatalf("parseRoute(%q) refused with %d %s (%s); want %d %s", tc.target, re.Status, re.Code, re.Message, tc.status, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRoute(%q): %v", tc.target, err)
			}
			if got.kind != tc.want.kind || got.registry != tc.want.registry || got.repository != tc.want.repository || got.reference != tc.want.reference {
				t.Fatalf("parseRoute(%q) = %+v; want %+v", tc.target, got, tc.want)
			}
			if tc.upstream != "" && got.upstreamPath() != tc.upstream {
				t.Fatalf("upstream path = %q; want %q", got.upstreamPath(), tc.upstream)
			}
		})
	}
}
