package cache

import (
	"context"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// readRepairTimeout bounds dropping a damaged blob after its reader failed.
const readRepairTimeout = 10 * time.Second

// damagedBlob drops a stored blob whose bytes do not match its digest, with its rows, and
// counts it; the next request fills it again from upstream.
func (c *Cache) damagedBlob(d v1.Hash, cause error) {
	c.m.corrupt()
	c.log.Error("stored blob is damaged; response cut, blob dropped", "digest", d.String(), "error", cause.Error())
	// The request may be gone already; the clean-up must still happen.
	ctx, cancel := context.WithTimeout(c.base, readRepairTimeout)
	defer cancel()
	c.heal(ctx, d, "blob")
}
