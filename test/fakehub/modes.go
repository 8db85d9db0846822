package fakehub

import (
	"fmt"
	"time"
)

type modeKind int

const (
	kindNormal modeKind = iota
	kindDown
	kindStatus
	kindRateLimited
	kindUnauthorized
	kindCorrupt
	kindTruncated
	kindSlow
	kindHeadNoLength
	kindRedirect
	kindEndless
)

// Mode is how the hub misbehaves. The zero value is Normal.
type Mode struct {
	kind       modeKind
	status     int
	retryAfter time.Duration
	// Slow: wait before the response headers, and between body chunks.
	headerDelay time.Duration
	chunkDelay  time.Duration
	// Redirect: where blob GETs are sent (the request path is appended).
	location string
}

// HeadWithoutLength answers blob HEADs 200 without Content-Length, whether or not the
// repository has the blob (a hostile or broken upstream). GETs stay normal.
func HeadWithoutLength() Mode { return Mode{kind: kindHeadNoLength} }

// Redirect answers blob GETs of linked blobs with a 307 to base + the request path, as
// Docker Hub sends blobs to its CDN.
func Redirect(base string) Mode { return Mode{kind: kindRedirect, location: base} }

// Endless answers blob GETs with a chunked body (no Content-Length) that never ends.
func Endless() Mode { return Mode{kind: kindEndless} }

// Normal answers like Docker Hub on a good day.
func Normal() Mode { return Mode{} }

// Down closes every connection (token endpoint included) without an HTTP response.
func Down() Mode { return Mode{kind: kindDown} }

// Status answers every /v2/ request (the ping included) with code and an OCI error body.
func Status(code int) Mode { return Mode{kind: kindStatus, status: code} }

// RateLimited answers manifest GETs and blob GETs with Docker Hub's pull-limit 429 and a
// Retry-After header when retryAfter > 0. HEAD requests and the ping stay free, as on Docker Hub.
func RateLimited(retryAfter time.Duration) Mode {
	return Mode{kind: kindRateLimited, retryAfter: retryAfter}
}

// Unauthorized refuses every /v2/ request with a Bearer challenge and refuses every token
// request, so no client can get in.
func Unauthorized() Mode { return Mode{kind: kindUnauthorized} }

// Corrupt flips one byte in the middle of manifest and blob GET bodies; lengths and headers
// (Docker-Content-Digest included) stay as they were.
func Corrupt() Mode { return Mode{kind: kindCorrupt} }

// Truncated sends the full Content-Length but closes the connection after half the body of
// manifest and blob GETs.
func Truncated() Mode { return Mode{kind: kindTruncated} }

// Slow waits headerDelay before sending the response headers, then sends bodies in 32 KiB
// chunks, one every chunkDelay (chunk k at k × chunkDelay after the first, never earlier; a
// chunk that is late does not delay the ones after it). Waits end early when the client goes
// away.
func Slow(headerDelay, chunkDelay time.Duration) Mode {
	return Mode{kind: kindSlow, headerDelay: headerDelay, chunkDelay: chunkDelay}
}

func (m Mode) String() string {
	switch m.kind {
	case kindNormal:
		return "normal"
	case kindDown:
		return "down"
	case kindStatus:
		return fmt.Sprintf("status %d", m.status)
	case kindRateLimited:
		return fmt.Sprintf("rate-limited (retry after %s)", m.retryAfter)
	case kindUnauthorized:
		return "unauthorized"
	case kindCorrupt:
		return "corrupt"
	case kindTruncated:
		return "truncated"
	case kindHeadNoLength:
		return "blob HEAD without length"
	case kindRedirect:
		return "redirect to " + m.location
	case kindEndless:
		return "endless blob body"
	case kindSlow:
		return fmt.Sprintf("slow (headers after %s, %s between chunks)", m.headerDelay, m.chunkDelay)
	}
	return "unknown"
}
