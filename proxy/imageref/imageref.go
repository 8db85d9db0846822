// Package imageref is the one mapping between upstream image references and their place
// under the cache: the webhook produces "<target>/<registry>/<repository>" names with it and
// the proxy parses them back. It has no I/O.
package imageref

import "strings"

// DockerHub is the canonical name of Docker Hub in cache paths and rewritten references.
const DockerHub = "docker.io"

// dockerHubAliases are the registry hosts that mean Docker Hub. An image reference with no
// registry also means Docker Hub.
var dockerHubAliases = map[string]bool{
	"docker.io":            true,
	"index.docker.io":      true,
	"registry-1.docker.io": true,
}

// IsDockerHub reports whether host names Docker Hub.
func IsDockerHub(host string) bool { return dockerHubAliases[host] }

// CanonicalRegistry returns the name a registry host is stored under: every Docker Hub alias
// becomes "docker.io"; other hosts are returned unchanged.
func CanonicalRegistry(host string) string {
	if IsDockerHub(host) {
		return DockerHub
	}
	return host
}

// IsHostComponent reports whether the first component of a name that has more than one is
// a registry host rather than part of the repository path: it contains '.' or ':', is
// "localhost", or has an uppercase letter (repository paths are lowercase). This is the
// reference grammar's rule (distribution's splitDockerDomain); every parser in hubcache
// asks here.
func IsHostComponent(first string) bool {
	return first == "localhost" || strings.ContainsAny(first, ".:") || strings.ToLower(first) != first
}

// MaxTagLength is the longest tag the reference grammar allows.
const MaxTagLength = 128

// ValidTag reports whether s is a tag in the reference grammar. The length is checked first,
// so a request path of any size costs no more than a tag's length of matching.
func ValidTag(s string) bool { return len(s) <= MaxTagLength && tagPattern.MatchString(s) }
