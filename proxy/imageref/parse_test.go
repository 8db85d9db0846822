package imageref

import (
	"errors"
	"strings"
	"testing"
)

const dig = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestMap(t *testing.T) {
	tests := []struct {
		name, ref, target, want string
	}{
		{"a bare name gets library and latest", "nginx", "127.0.0.1:5000", "127.0.0.1:5000/docker.io/library/nginx:latest"},
		{"a digest gets no tag", "bitnami/redis@" + dig, "127.0.0.1:5000", "127.0.0.1:5000/docker.io/bitnami/redis@" + dig},
		{"tag and digest are both kept", "nginx:1.27@" + dig, "c.example", "c.example/docker.io/library/nginx:1.27@" + dig},
		{"another registry keeps its host", "quay.io/a/b:1", "127.0.0.1:5000", "127.0.0.1:5000/quay.io/a/b:1"},
		{"registry-1.docker.io is docker.io", "registry-1.docker.io/nginx:1", "t:1", "t:1/docker.io/library/nginx:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := Parse(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := Map(tt.target, ref); got != tt.want {
				t.Errorf("Map = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseRejectsWhatDistributionRejects(t *testing.T) {
	for _, s := range []string{"", "a//b", "-a", "a:.x", "Nginx", "a_b.com/x", "nginx@sha256:1"} {
		if _, err := Parse(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) error = %v, want ErrInvalid", s, err)
		}
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		name, path, registry, repository string
		ok                               bool
	}{
		{"a Docker Hub official image", "docker.io/library/nginx", "docker.io", "library/nginx", true},
		{"a Docker Hub user image", "docker.io/bitnami/redis", "docker.io", "bitnami/redis", true},
		{"an alias is made canonical", "index.docker.io/library/nginx", "docker.io", "library/nginx", true},
		{"another registry", "quay.io/prometheus/prometheus", "quay.io", "prometheus/prometheus", true},
		{"a registry with a port", "myreg:5000/a/b", "myreg:5000", "a/b", true},
		{"a Docker Hub path without library is incomplete", "docker.io/nginx", "", "", false},
		{"a path without registry", "library/nginx", "", "", false},
		{"a path with a tag", "docker.io/library/nginx:1", "", "", false},
		{"an uppercase repository", "docker.io/library/Nginx", "", "", false},
		{"an empty component", "docker.io/library//nginx", "", "", false},
		{"an empty path", "", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, repo, err := Split(tt.path)
			if tt.ok != (err == nil) {
				t.Fatalf("Split(%q) error = %v, want ok=%v", tt.path, err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error %v is not ErrInvalid", err)
				}
				return
			}
			if reg != tt.registry || repo != tt.repository {
				t.Errorf("Split(%q) = %q, %q, want %q, %q", tt.path, reg, repo, tt.registry, tt.repository)
			}
		})
	}
}

func TestParseRefusesImageIDs(t *testing.T) {
	id := "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
	for _, s := range []string{id, "sha256:" + id} {
		if _, err := Parse(s); !errors.Is(err, ErrImageID) || !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) error = %v, want ErrImageID and ErrInvalid", s, err)
		}
	}
}

func TestIsHostComponent(t *testing.T) {
	for s, want := range map[string]bool{
		"docker.io": true, "localhost": true, "myreg:5000": true, "MyReg": true, "[::1]:5000": true,
		"library": false, "bitnami": false, "my-org": false,
	} {
		if got := IsHostComponent(s); got != want {
			t.Errorf("IsHostComponent(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestParseReadsTheLongestValidReferenceAndNothingLonger(t *testing.T) {
	// A name of 255 characters (host and path), a 128-character tag and a sha512 digest.
	name := "registry.example.com/" + strings.Repeat("a", MaxNameLength-len("registry.example.com/"))
	longest := name + ":" + strings.Repeat("t", 128) + "@sha512:" + strings.Repeat("0", 128)
	if len(longest) != MaxReferenceLength {
		t.Fatalf("the longest valid reference is %d characters, MaxReferenceLength says %d", len(longest), MaxReferenceLength)
	}
	if _, err := Parse(longest); err != nil {
		t.Fatalf("Parse(the longest valid reference): %v", err)
	}
	// One more tag character is invalid anyway; megabytes of a valid-looking name (among the
	// grammar's slowest inputs: seconds per call) are refused before the grammar runs, with a
	// message that does not repeat them.
	for _, s := range []string{
		name + ":" + strings.Repeat("t", 129) + "@sha512:" + strings.Repeat("0", 128),
		strings.Repeat("a.", 1<<20),
	} {
		_, err := Parse(s)
		if !errors.Is(err, ErrInvalid) || len(err.Error()) > 200 {
			t.Errorf("Parse(%d characters) error = %.200v, want a short ErrInvalid", len(s), err)
		}
	}
}

func TestValidTagStopsAtTheGrammarsLength(t *testing.T) {
	for _, tc := range []struct {
		tag  string
		want bool
	}{
		{"1.27", true},
		{strings.Repeat("a", MaxTagLength), true},
		{strings.Repeat("a", MaxTagLength+1), false},
		{strings.Repeat("a", 1<<20), false},
		{"-leading-dash", false},
	} {
		if got := ValidTag(tc.tag); got != tc.want {
			t.Errorf("ValidTag(%.20q… of %d) = %v, want %v", tc.tag, len(tc.tag), got, tc.want)
		}
	}
}
