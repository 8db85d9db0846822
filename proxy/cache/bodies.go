package cache

import (
	"sync"
	"unsafe"
	"weak"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// bodies lets every request for one cached manifest share one copy of its bytes while any
// request still holds it: a hundred clients that stall on a 4 MiB manifest cost 4 MiB, not
// 400. The references are weak, so the map itself keeps no body alive; an entry whose body
// was collected is read from the store again.
type bodies struct {
	mu sync.Mutex
	m  map[v1.Hash]sharedBody
}

type sharedBody struct {
	first weak.Pointer[byte] // the body's first byte: keeps track of its whole array
	size  int
}

func newBodies() *bodies { return &bodies{m: map[v1.Hash]sharedBody{}} }

// get returns the live copy of d's verified body, if some request still holds one.
func (b *bodies) get(d v1.Hash, size int64) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[d]
	if !ok {
		return nil, false
	}
	p := e.first.Value()
	if p == nil || int64(e.size) != size {
		delete(b.m, d)
		return nil, false
	}
	// The pointer was made from &body[0] of a slice of e.size bytes.
	return unsafe.Slice(p, e.size), true
}

// put shares body (verified against d) with later readers and returns the copy to serve:
// an existing live one when another request got there first.
func (b *bodies) put(d v1.Hash, body []byte) []byte {
	if len(body) == 0 {
		return body
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.m[d]; ok && e.size == len(body) {
		if p := e.first.Value(); p != nil {
			return unsafe.Slice(p, e.size)
		}
	}
	// Drop entries whose bodies are gone, so the map stays as small as what is in use.
	for k, e := range b.m {
		if e.first.Value() == nil {
			delete(b.m, k)
		}
	}
	body = body[:len(body):len(body)]
	b.m[d] = sharedBody{first: weak.Make(&body[0]), size: len(body)}
	return body
}
