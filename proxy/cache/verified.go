package cache

import (
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultVerifyInterval is how long a whole read of a stored blob that hashed to its digest
// vouches for later reads of the same, unchanged object (blobstore.Versioned): those are sent
// without hashing, with sendfile from the file store, at the speed of the copy rather than of
// SHA-256 (docs/bench.md, rows 01–03).
//
// What it changes is bounded by it. Any change made through the file system or the S3 API
// (a write, a truncation, a replaced file or object) gives the object a new version, so the
// next read hashes it again and a damaged one is cut before its last byte and dropped, as
// before. Only damage the file system cannot see (bits rotting on the medium, a raw write to
// the block device) is served until the interval ends; the client's own digest check rejects
// those bytes, and the next hashed read drops the object.
const DefaultVerifyInterval = time.Hour

// maxVerified bounds the remembered versions; when full, expired entries are dropped, then
// an eighth of the rest (a forgotten version is only hashed again).
const maxVerified = 1 << 16

// racyWindow is how old a version must be, when a read that hashes it begins, for that read
// to vouch for it: a file system with coarse timestamps (Linux before 6.13 keeps them to the
// clock tick) or S3's one-second Last-Modified can take a second write in the same tick
// without a new version. Git judges its index "racily clean" by the same rule.
const racyWindow = 2 * time.Second

type verifiedVersion struct {
	version string
	at      time.Time
}

// verifiedReads remembers, per digest, the last object version that hashed correctly and
// when. The zero interval remembers nothing: every whole read is hashed.
type verifiedReads struct {
	interval time.Duration
	now      func() time.Time
	racy     time.Duration // racyWindow; tests shorten it

	mu sync.Mutex
	m  map[v1.Hash]verifiedVersion
}

func newVerifiedReads(interval time.Duration, now func() time.Time) *verifiedReads {
	return &verifiedReads{interval: interval, now: now, racy: racyWindow, m: map[v1.Hash]verifiedVersion{}}
}

// fresh reports whether version of d hashed correctly less than the interval ago.
func (v *verifiedReads) fresh(d v1.Hash, version string) bool {
	if v.interval <= 0 || version == "" {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[d]
	return ok && e.version == version && v.now().Sub(e.at) < v.interval
}

// record notes that version of d hashed correctly now.
func (v *verifiedReads) record(d v1.Hash, version string) {
	if v.interval <= 0 || version == "" {
		return
	}
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.m[d]; !ok && len(v.m) >= maxVerified {
		v.makeRoom(now)
	}
	v.m[d] = verifiedVersion{version: version, at: now}
}

// makeRoom drops the expired entries, and if that is not an eighth of the map, as many more
// (map order is random): the scan runs once per maxVerified/8 new entries at most.
func (v *verifiedReads) makeRoom(now time.Time) {
	for k, e := range v.m {
		if now.Sub(e.at) >= v.interval {
			delete(v.m, k)
		}
	}
	for k := range v.m {
		if len(v.m) <= maxVerified-maxVerified/8 {
			break
		}
		delete(v.m, k)
	}
}

// forget drops what is known of d (it was found damaged, or deleted).
func (v *verifiedReads) forget(d v1.Hash) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.m, d)
}
