package s3

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    Config
		wantErr string
	}{
		{
			name: "a bucket alone uses AWS defaults",
			raw:  "s3://blobs",
			want: Config{Bucket: "blobs"},
		},
		{
			name: "the documented form with every parameter",
			raw:  "s3://hubcache/cache/prod?endpoint=http://minio.storage:9000&region=eu-west-1&path-style=true",
			want: Config{Bucket: "hubcache", Prefix: "cache/prod", Endpoint: "http://minio.storage:9000", Region: "eu-west-1", PathStyle: true},
		},
		{
			name: "slashes around the prefix are dropped",
			raw:  "s3://hubcache//cache/?region=us-east-1",
			want: Config{Bucket: "hubcache", Prefix: "cache", Region: "us-east-1"},
		},
		{
			name: "path-style accepts any boolean spelling",
			raw:  "s3://hubcache?path-style=1",
			want: Config{Bucket: "hubcache", PathStyle: true},
		},
		{
			name: "path-style=false is explicit virtual-host addressing",
			raw:  "s3://hubcache?path-style=false",
			want: Config{Bucket: "hubcache"},
		},
		{
			name: "an https endpoint with a path is kept verbatim",
			raw:  "s3://hubcache?endpoint=https%3A%2F%2Fs3.example.com%2Fgateway",
			want: Config{Bucket: "hubcache", Endpoint: "https://s3.example.com/gateway"},
		},
		{
			name: "a part size in bytes",
			raw:  "s3://hubcache?part-size=16777216",
			want: Config{Bucket: "hubcache", PartSize: 16 << 20},
		},
		{name: "another scheme is refused", raw: "gs://hubcache", wantErr: "scheme must be s3"},
		{name: "a missing bucket is refused", raw: "s3:///prefix", wantErr: "not a valid bucket name"},
		{name: "an uppercase bucket is refused", raw: "s3://HubCache", wantErr: "not a valid bucket name"},
		{name: "a bucket with a port is refused", raw: "s3://hubcache:9000", wantErr: "not a valid bucket name"},
		{name: "credentials in the URL are refused without echoing them", raw: "s3://AKIAXX:topsecret@hubcache", wantErr: "credentials do not belong in the URL"},
		{name: "a dot-dot prefix segment is refused", raw: "s3://hubcache/a/../b", wantErr: "must not contain"},
		{name: "an empty prefix segment is refused", raw: "s3://hubcache/a//b", wantErr: "must not contain"},
		{name: "an unknown parameter is refused", raw: "s3://hubcache?pathstyle=true", wantErr: `unknown parameter "pathstyle"`},
		{name: "a repeated parameter is refused", raw: "s3://hubcache?region=a&region=b", wantErr: "given 2 times"},
		{name: "an endpoint without scheme is refused", raw: "s3://hubcache?endpoint=minio:9000", wantErr: "must be an http:// or https:// URL"},
		{name: "an endpoint without host is refused", raw: "s3://hubcache?endpoint=http://", wantErr: "must be an http:// or https:// URL"},
		{name: "an empty region is refused", raw: "s3://hubcache?region=", wantErr: "empty region"},
		{name: "a path-style that is not a boolean is refused", raw: "s3://hubcache?path-style=yes", wantErr: "not a boolean"},
		{name: "a part size below S3's minimum is refused", raw: "s3://hubcache?part-size=1024", wantErr: "part-size"},
		{name: "a fragment is refused", raw: "s3://hubcache#x", wantErr: "want s3://BUCKET"},
		{name: "an unparsable URL is refused", raw: "s3://hub cache", wantErr: "s3 blob store URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseURL(tc.raw)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseURL(%q) = %+v, want an error containing %q", tc.raw, got, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ParseURL(%q) error = %q, want it to contain %q", tc.raw, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "topsecret") || strings.Contains(err.Error(), "AKIAXX") {
					t.Errorf("ParseURL error leaks credentials: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tc.raw, err)
			}
			if got != tc.want {
				t.Errorf("ParseURL(%q) = %+v, want %+v", tc.raw, got, tc.want)
			}
			// String renders a URL that parses back to the same configuration.
			again, err := ParseURL(got.String())
			if err != nil || again != got {
				t.Errorf("ParseURL(%q) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}
