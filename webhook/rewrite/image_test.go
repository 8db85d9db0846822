package rewrite

import (
	"strings"
	"testing"
)

const (
	dig  = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	dig5 = "sha512:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tgt = DefaultTarget + "/docker.io/"
)

func TestImage(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	custom := Policy{Target: "cache.example.com"}
	customPort := Policy{Target: "registry.internal:8443"}
	ipv6Target := Policy{Target: "[::1]:5000"}
	excl := Policy{Exclude: []string{"docker.io/library/busybox*", "bitnami/*", "*/private/*"}}

	tests := []struct {
		name   string
		ref    string
		policy Policy
		want   string // rewritten reference, "" when left alone
		reason Reason
	}{
		// Docker Hub short forms.
		{"a bare official image gets library/ and latest", "nginx", Policy{}, tgt + "library/nginx:latest", ReasonRewritten},
		{"a bare official image keeps its tag", "nginx:1.27", Policy{}, tgt + "library/nginx:1.27", ReasonRewritten},
		{"an explicit latest tag is kept as written", "nginx:latest", Policy{}, tgt + "library/nginx:latest", ReasonRewritten},
		{"an uppercase tag is kept", "nginx:Stable-ALPINE", Policy{}, tgt + "library/nginx:Stable-ALPINE", ReasonRewritten},
		{"a tag with dots, dashes and underscores is kept", "nginx:1.27.0-alpine_slim", Policy{}, tgt + "library/nginx:1.27.0-alpine_slim", ReasonRewritten},
		{"a tag starting with an underscore is valid", "nginx:_x", Policy{}, tgt + "library/nginx:_x", ReasonRewritten},
		{"a 128 character tag is valid", "nginx:" + long(128), Policy{}, tgt + "library/nginx:" + long(128), ReasonRewritten},
		{"a user repository gets latest", "bitnami/redis", Policy{}, tgt + "bitnami/redis:latest", ReasonRewritten},
		{"a user repository keeps its tag", "bitnami/redis:7.2", Policy{}, tgt + "bitnami/redis:7.2", ReasonRewritten},
		{"library/x is left as library/x", "library/nginx", Policy{}, tgt + "library/nginx:latest", ReasonRewritten},
		{"a three component Docker Hub path is kept", "org/team/app:v1", Policy{}, tgt + "org/team/app:v1", ReasonRewritten},
		{"a repository with separators is kept", "my-org/my_app.web__x:v1", Policy{}, tgt + "my-org/my_app.web__x:v1", ReasonRewritten},
		{"digits in the repository are fine", "abc123/x9:1", Policy{}, tgt + "abc123/x9:1", ReasonRewritten},
		{"repeated dashes are a valid separator", "a--b/c", Policy{}, tgt + "a--b/c:latest", ReasonRewritten},

		// Docker Hub aliases.
		{"docker.io/x gets library/", "docker.io/nginx", Policy{}, tgt + "library/nginx:latest", ReasonRewritten},
		{"docker.io/library/x is canonical already", "docker.io/library/nginx:1.27", Policy{}, tgt + "library/nginx:1.27", ReasonRewritten},
		{"docker.io/user/x keeps the user", "docker.io/bitnami/redis", Policy{}, tgt + "bitnami/redis:latest", ReasonRewritten},
		{"index.docker.io/x gets library/", "index.docker.io/nginx", Policy{}, tgt + "library/nginx:latest", ReasonRewritten},
		{"index.docker.io/library/x is Docker Hub", "index.docker.io/library/nginx:1", Policy{}, tgt + "library/nginx:1", ReasonRewritten},
		{"index.docker.io/user/x is Docker Hub", "index.docker.io/bitnami/redis:7", Policy{}, tgt + "bitnami/redis:7", ReasonRewritten},
		{"registry-1.docker.io/x gets library/", "registry-1.docker.io/nginx", Policy{}, tgt + "library/nginx:latest", ReasonRewritten},
		{"registry-1.docker.io/library/x is Docker Hub", "registry-1.docker.io/library/nginx:1", Policy{}, tgt + "library/nginx:1", ReasonRewritten},
		{"registry-1.docker.io/user/x is Docker Hub", "registry-1.docker.io/bitnami/redis@" + dig, Policy{}, tgt + "bitnami/redis@" + dig, ReasonRewritten},

		// Digests.
		{"a digest-only reference gets no tag", "nginx@" + dig, Policy{}, tgt + "library/nginx@" + dig, ReasonRewritten},
		{"tag and digest are both kept", "nginx:1.27@" + dig, Policy{}, tgt + "library/nginx:1.27@" + dig, ReasonRewritten},
		{"tag and digest are kept on a user repository", "bitnami/redis:7@" + dig, Policy{}, tgt + "bitnami/redis:7@" + dig, ReasonRewritten},
		{"tag and digest are kept behind docker.io", "docker.io/library/nginx:1@" + dig, Policy{}, tgt + "library/nginx:1@" + dig, ReasonRewritten},
		{"a sha512 digest is kept", "nginx@" + dig5, Policy{}, tgt + "library/nginx@" + dig5, ReasonRewritten},
		{"latest with a digest stays latest with a digest", "nginx:latest@" + dig, Policy{}, tgt + "library/nginx:latest@" + dig, ReasonRewritten},

		// Custom targets.
		{"a custom host target", "nginx", custom, "cache.example.com/docker.io/library/nginx:latest", ReasonRewritten},
		{"a custom host:port target", "bitnami/redis:7", customPort, "registry.internal:8443/docker.io/bitnami/redis:7", ReasonRewritten},
		{"an IPv6 target", "nginx:1", ipv6Target, "[::1]:5000/docker.io/library/nginx:1", ReasonRewritten},
		{"a reference under a custom target is already rewritten", "cache.example.com/docker.io/library/nginx:latest", custom, "", ReasonAlreadyRewritten},
		{"the default target under a custom policy is another registry", DefaultTarget + "/docker.io/library/nginx:1", custom, "", ReasonOtherRegistry},

		// Already rewritten (idempotence).
		{"a rewritten reference is left as it is", tgt + "library/nginx:latest", Policy{}, "", ReasonAlreadyRewritten},
		{"a rewritten digest reference is left as it is", tgt + "library/nginx:1@" + dig, Policy{}, "", ReasonAlreadyRewritten},
		{"anything under the target counts as rewritten", DefaultTarget + "/whatever", Policy{}, "", ReasonAlreadyRewritten},

		// Other registries.
		{"quay.io is not Docker Hub", "quay.io/prometheus/prometheus:v2", Policy{}, "", ReasonOtherRegistry},
		{"ghcr.io is not Docker Hub", "ghcr.io/org/app@" + dig, Policy{}, "", ReasonOtherRegistry},
		{"registry.k8s.io is not Docker Hub", "registry.k8s.io/pause:3.10", Policy{}, "", ReasonOtherRegistry},
		{"gcr.io is not Docker Hub", "gcr.io/distroless/static:nonroot", Policy{}, "", ReasonOtherRegistry},
		{"localhost/x is a local registry", "localhost/app", Policy{}, "", ReasonOtherRegistry},
		{"localhost:5000/x is a local registry", "localhost:5000/app:v1", Policy{}, "", ReasonOtherRegistry},
		{"a host with a port and no dot is a registry", "myreg:5000/app", Policy{}, "", ReasonOtherRegistry},
		{"an IPv6 loopback registry", "[::1]:5000/app", Policy{}, "", ReasonOtherRegistry},
		{"an IPv6 registry without port", "[2001:db8::1]/team/app:1", Policy{}, "", ReasonOtherRegistry},
		{"an IPv6 registry with tag and digest", "[fe80::1]:443/app:1@" + dig, Policy{}, "", ReasonOtherRegistry},
		{"an IPv4 registry", "10.0.0.5:5000/app", Policy{}, "", ReasonOtherRegistry},
		{"an uppercase first component is a registry host", "MyRegistry/app:v1", Policy{}, "", ReasonOtherRegistry},
		{"an uppercase host with a digest is a registry host", "MyReg/app:v1@" + dig, Policy{}, "", ReasonOtherRegistry},
		{"an uppercase dotted host is a registry", "Quay.IO/org/app", Policy{}, "", ReasonOtherRegistry},
		{"an uppercase Docker Hub spelling is another host", "DOCKER.IO/nginx", Policy{}, "", ReasonOtherRegistry},
		{"a docker.io subdomain that is not an alias", "mirror.docker.io/nginx", Policy{}, "", ReasonOtherRegistry},
		{"a Docker Hub look-alike", "docker.io.evil.com/nginx", Policy{}, "", ReasonOtherRegistry},
		{"a hostname-ish first component without dot is Docker Hub", "myreg/app", Policy{}, tgt + "myreg/app:latest", ReasonRewritten},

		// Invalid.
		{"an empty reference is invalid", "", Policy{}, "", ReasonInvalid},
		{"an uppercase repository is invalid", "Nginx", Policy{}, "", ReasonInvalid},
		{"an uppercase repository under docker.io is invalid", "docker.io/Library/nginx", Policy{}, "", ReasonInvalid},
		{"an uppercase repository under another registry is invalid", "quay.io/Org/app", Policy{}, "", ReasonInvalid},
		{"a trailing colon is invalid", "nginx:", Policy{}, "", ReasonInvalid},
		{"a tag starting with a dash is invalid", "nginx:-x", Policy{}, "", ReasonInvalid},
		{"a tag starting with a dot is invalid", "nginx:.x", Policy{}, "", ReasonInvalid},
		{"a 129 character tag is invalid", "nginx:" + long(129), Policy{}, "", ReasonInvalid},
		{"an empty path component is invalid", "library//nginx", Policy{}, "", ReasonInvalid},
		{"a leading separator is invalid", "-nginx", Policy{}, "", ReasonInvalid},
		{"a trailing slash is invalid", "nginx/", Policy{}, "", ReasonInvalid},
		{"a doubled dot is invalid", "ng..inx", Policy{}, "", ReasonInvalid},
		{"three underscores are invalid", "a___b", Policy{}, "", ReasonInvalid},
		{"a short digest is invalid", "nginx@sha256:abc", Policy{}, "", ReasonInvalid},
		{"an unknown digest algorithm is invalid", "nginx@md5:0123456789abcdef0123456789abcdef", Policy{}, "", ReasonInvalid},
		{"two digests are invalid", "nginx@" + dig + "@" + dig, Policy{}, "", ReasonInvalid},
		{"a URL scheme is invalid", "https://docker.io/nginx", Policy{}, "", ReasonInvalid},
		{"whitespace is invalid", " nginx", Policy{}, "", ReasonInvalid},
		{"an inner space is invalid", "nginx :1", Policy{}, "", ReasonInvalid},
		{"an underscore in a host is invalid", "my_reg.example.com/app", Policy{}, "", ReasonInvalid},
		{"a non-numeric port is invalid", "myreg:port/app", Policy{}, "", ReasonInvalid},
		{"a name over 255 characters is invalid", "u/" + long(254), Policy{}, "", ReasonInvalid},

		// Too long once rewritten.
		{"a name that only fits upstream is too long under the target", "u/" + long(230), Policy{}, "", ReasonTooLong},
		{"a name that fits under the target is rewritten", "u/" + long(222), Policy{}, tgt + "u/" + long(222) + ":latest", ReasonRewritten},

		// Excludes.
		{"an exclude pattern on the normalised form", "busybox", excl, "", ReasonExcluded},
		{"an exclude pattern matches any alias", "index.docker.io/library/busybox:1.36", excl, "", ReasonExcluded},
		{"an exclude pattern on the original reference", "bitnami/redis", excl, "", ReasonExcluded},
		{"an exclude pattern on a middle component", "team/private/app:1", excl, "", ReasonExcluded},
		{"an image not matching any pattern is rewritten", "busy/box", excl, tgt + "busy/box:latest", ReasonRewritten},
		{"excludes do not hide another registry's reason", "quay.io/bitnami/redis", excl, "", ReasonOtherRegistry},
	}
	if len(tests) < 60 {
		t.Fatalf("only %d reference forms; the plan needs at least 60", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Image(tt.ref, tt.policy)
			if d.Reason != tt.reason || d.Rewritten != tt.want {
				t.Fatalf("Image(%q) = %q (%s: %s), want %q (%s)", tt.ref, d.Rewritten, d.Reason, d.Detail, tt.want, tt.reason)
			}
			if d.Original != tt.ref {
				t.Errorf("Original = %q, want %q", d.Original, tt.ref)
			}
			if d.Reason != ReasonRewritten && d.Detail == "" {
				t.Errorf("a reference left alone (%s) has no Detail", d.Reason)
			}
			if d.Changed() != (tt.want != "") {
				t.Errorf("Changed() = %v for %q", d.Changed(), d.Rewritten)
			}
			if d.Changed() {
				again := Image(d.Rewritten, tt.policy)
				if again.Changed() || again.Reason != ReasonAlreadyRewritten {
					t.Errorf("Image of the rewritten %q = %+v, want already-rewritten", d.Rewritten, again)
				}
			}
		})
	}
}

func TestImageInvalidDetailIsTheParseError(t *testing.T) {
	d := Image("nginx:-x", Policy{})
	if !strings.Contains(d.Detail, `"-x"`) {
		t.Errorf("Detail = %q, want it to name the bad tag", d.Detail)
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		ok     bool
	}{
		{"the zero policy uses the default target", Policy{}, true},
		{"a host target", Policy{Target: "cache.example.com"}, true},
		{"a host:port target", Policy{Target: "127.0.0.1:5000"}, true},
		{"an IPv6 target", Policy{Target: "[::1]:5000"}, true},
		{"a target with a path", Policy{Target: "127.0.0.1:5000/cache"}, false},
		{"a target with a scheme", Policy{Target: "http://127.0.0.1:5000"}, false},
		{"a target without dot or port reads as a repository", Policy{Target: "cache"}, false},
		{"localhost as target", Policy{Target: "localhost"}, true},
		{"a target with a bad port", Policy{Target: "host:port"}, false},
		{"Docker Hub as target", Policy{Target: "docker.io"}, false},
		{"Docker Hub alias as target", Policy{Target: "Registry-1.Docker.io"}, false},
		{"a good exclude pattern", Policy{Exclude: []string{"docker.io/library/*"}}, true},
		{"a malformed exclude pattern", Policy{Exclude: []string{"docker.io/[abc"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// imageID is a 64-hex image ID, the form `docker images --no-trunc` prints.
const imageID = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

func TestImageIDsAreNotNames(t *testing.T) {
	tests := []struct {
		name, ref string
		want      string
		reason    Reason
	}{
		{"a bare image ID is left alone as invalid", imageID, "", ReasonInvalid},
		{"an image ID with its algorithm is left alone as invalid", "sha256:" + imageID, "", ReasonInvalid},
		{"64 hex under an explicit registry is a name", "docker.io/" + imageID, tgt + "library/" + imageID + ":latest", ReasonRewritten},
		{"64 hex with a tag is a name", imageID + ":1", tgt + "library/" + imageID + ":1", ReasonRewritten},
		{"63 hex is a name", imageID[:63], tgt + "library/" + imageID[:63] + ":latest", ReasonRewritten},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Image(tt.ref, Policy{})
			if d.Reason != tt.reason || d.Rewritten != tt.want {
				t.Fatalf("Image(%q) = %q (%s: %s), want %q (%s)", tt.ref, d.Rewritten, d.Reason, d.Detail, tt.want, tt.reason)
			}
			if tt.reason == ReasonInvalid && !strings.Contains(d.Detail, "image ID") {
				t.Errorf("Detail = %q, want it to say this is an image ID", d.Detail)
			}
		})
	}
}

// TestImageFollowsDistributionsOwnExamples runs the valid and invalid repository names of
// distribution/reference's normalisation tests: every valid one is read (rewritten or left
// with a reason other than invalid), every invalid one is refused.
func TestImageFollowsDistributionsOwnExamples(t *testing.T) {
	valid := []string{
		"docker/docker", "library/debian", "debian", "localhost/library/debian", "localhost/debian",
		"LOCALDOMAIN/library/debian", "LOCALDOMAIN/debian", "docker.io/docker/docker",
		"docker.io/library/debian", "docker.io/debian", "index.docker.io/docker/docker",
		"index.docker.io/library/debian", "index.docker.io/debian", "127.0.0.1:5000/docker/docker",
		"127.0.0.1:5000/library/debian", "127.0.0.1:5000/debian", "192.168.0.1", "192.168.0.1:80",
		"192.168.0.1:8/debian", "192.168.0.2:25000/debian",
		"thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
		"[fc00::1]:5000/docker", "[fc00::1]:5000/docker/docker", "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
		"docker.io/" + imageID, "Docker/docker", "DOCKER/docker",
	}
	invalid := []string{
		"https://github.com/docker/docker", "docker/Docker", "-docker", "-docker/docker",
		"-docker.io/docker/docker", "docker///docker", "docker.io/docker/Docker",
		"docker.io/docker///docker", "[fc00::1]", "[fc00::1]:5000", "fc00::1:5000/debian",
		"[fe80::1%eth0]:5000/debian", "[2001:db8:3:4::192.0.2.33]:5000/debian", imageID,
	}
	for _, ref := range valid {
		if d := Image(ref, Policy{}); d.Reason == ReasonInvalid {
			t.Errorf("Image(%q) refused a name distribution accepts: %s", ref, d.Detail)
		}
	}
	for _, ref := range invalid {
		if d := Image(ref, Policy{}); d.Reason != ReasonInvalid {
			t.Errorf("Image(%q) = %s %q, want invalid as distribution says", ref, d.Reason, d.Rewritten)
		}
	}
}
