package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/oci"
)

// errMiss means "not usable from the cache": absent, or healed away just now.
var errMiss = errors.New("not cached")

// Manifest returns the manifest for ref (a tag, or a "sha256:…" digest) in repo. When a store
// fails, upstream answers (see manifestFromUpstream) and nothing is written.
func (c *Cache) Manifest(ctx context.Context, repo Repo, ref string) (Manifest, error) {
	if err := c.checkRegistry(repo); err != nil {
		return Manifest{}, err
	}
	m, err := c.manifest(ctx, repo, ref)
	store := degradedBy(ctx, err)
	if store == "" {
		return m, err
	}
	c.m.degradedBy(store, kindManifest)
	c.log.Warn("store failed; answering the manifest from upstream without caching",
		"repo", repo.String(), "ref", ref, "error", err.Error())
	return c.manifestFromUpstream(ctx, repo, ref)
}

// manifestFromUpstream answers without the metadata store: upstream's HEAD (free) says which
// digest ref is in repo, which also confirms repo may read it; the stored bytes of that digest
// are served when the blob store has them, else upstream's, verified. Nothing is written.
func (c *Cache) manifestFromUpstream(ctx context.Context, repo Repo, ref string) (Manifest, error) {
	var want v1.Hash
	if strings.Contains(ref, ":") {
		d, err := v1.NewHash(ref)
		if err != nil {
			return Manifest{}, fmt.Errorf("%w: invalid digest %q", ErrManifestUnknown, ref)
		}
		want = d
	}
	desc, err := c.up.HeadManifest(ctx, repo.Registry, repo.Path, ref)
	c.m.upstream("HEAD", kindManifest, err)
	if err != nil {
		return Manifest{}, upstreamError(err, kindManifest)
	}
	if want == (v1.Hash{}) {
		want = desc.Digest
	}
	if desc.Digest != want {
		return Manifest{}, fmt.Errorf("%w: upstream answered %s for %s", ErrUnavailable, desc.Digest, ref)
	}
	if body, err := c.readObject(ctx, want); err == nil {
		if m, err := c.verifyManifest(body, desc.MediaType, want); err == nil {
			c.m.hit(kindManifest)
			return m, nil
		}
	}
	body, got, err := c.up.GetManifest(ctx, repo.Registry, repo.Path, want.String())
	c.m.upstream("GET", kindManifest, err)
	if err != nil {
		return Manifest{}, upstreamError(err, kindManifest)
	}
	c.m.miss(kindManifest)
	return c.verifyManifest(body, got.MediaType, want)
}

func (c *Cache) manifest(ctx context.Context, repo Repo, ref string) (Manifest, error) {
	if strings.Contains(ref, ":") {
		d, err := v1.NewHash(ref)
		if err != nil {
			return Manifest{}, fmt.Errorf("%w: invalid digest %q", ErrManifestUnknown, ref)
		}
		return c.manifestByDigest(ctx, repo, d)
	}
	return c.manifestByTag(ctx, repo, ref)
}

// manifestByDigest serves a digest from the cache without asking upstream; a miss is
// fetched once, however many clients ask at the same time.
func (c *Cache) manifestByDigest(ctx context.Context, repo Repo, d v1.Hash) (Manifest, error) {
	m, err := c.loadManifest(ctx, repo, d)
	if err == nil {
		c.m.hit(kindManifest)
		c.touch(ctx, d)
		return m, nil
	}
	if !errors.Is(err, errMiss) {
		return Manifest{}, err
	}
	c.m.miss(kindManifest)
	return shared(ctx, c, "digest\x00"+repo.String()+"\x00"+d.String(), func(ctx context.Context) (Manifest, error) {
		return c.fetchDigest(ctx, repo, d)
	})
}

// manifestByTag answers from metadata while the tag is fresh; after the TTL it asks upstream
// with a HEAD (free against Docker Hub's limit) and fetches only when the digest changed.
// Any upstream failure with a cached tag serves the cached manifest (stale-if-error).
func (c *Cache) manifestByTag(ctx context.Context, repo Repo, tag string) (Manifest, error) {
	if m, fresh, err := c.cachedTag(ctx, repo, tag, true); err == nil && fresh {
		c.m.hit(kindManifest)
		c.touch(ctx, m.Digest)
		return m, nil
	}
	ans, err := shared(ctx, c, "tag\x00"+repo.String()+"\x00"+tag, func(ctx context.Context) (tagAnswer, error) {
		m, o, err := c.resolveTag(ctx, repo, tag)
		return tagAnswer{m: m, outcome: o}, err
	})
	// Every caller counts the answer it got, whether it ran the upstream work or joined it.
	switch ans.outcome {
	case "stale":
		c.m.stale()
	case "miss":
		c.m.miss(kindManifest)
	case "hit":
		c.m.hit(kindManifest)
	}
	if err != nil {
		return Manifest{}, err
	}
	if ans.outcome != "miss" {
		// Served from the cache after a revalidation: a use, as far as eviction goes.
		c.touch(ctx, ans.m.Digest)
	}
	return ans.m, nil
}

// tagAnswer is a tag's manifest and how it was answered: "hit", "miss" or "stale".
type tagAnswer struct {
	m       Manifest
	outcome string
}

// resolveTag runs once per tag at a time. It returns the manifest and how it was answered.
func (c *Cache) resolveTag(ctx context.Context, repo Repo, tag string) (Manifest, string, error) {
	cached, fresh, err := c.cachedTag(ctx, repo, tag, false)
	switch {
	case err == nil && fresh:
		return cached, "hit", nil
	case err == nil:
		return c.revalidate(ctx, repo, tag, cached)
	case !errors.Is(err, errMiss):
		return Manifest{}, "", err
	}
	m, err := c.leased(ctx, "manifest:"+repo.String()+":"+tag, func(ctx context.Context) (Manifest, error) {
		m, _, err := c.cachedTag(ctx, repo, tag, false)
		return m, err
	}, func(ctx context.Context) (Manifest, error) {
		return c.fetchTag(ctx, repo, tag)
	})
	return m, "miss", err
}

// fetchTag fetches a tag that is not cached (unless another replica cached it meanwhile) and
// records it.
func (c *Cache) fetchTag(ctx context.Context, repo Repo, tag string) (Manifest, error) {
	if m, _, err := c.cachedTag(ctx, repo, tag, false); err == nil || !errors.Is(err, errMiss) {
		return m, err
	}
	body, desc, err := c.up.GetManifest(ctx, repo.Registry, repo.Path, tag)
	c.m.upstream("GET", kindManifest, err)
	if err != nil {
		return Manifest{}, upstreamError(err, kindManifest)
	}
	m, err := c.verifyManifest(body, desc.MediaType, desc.Digest)
	if err != nil {
		return Manifest{}, err
	}
	if err := c.storeManifest(ctx, repo, m); err != nil {
		if degradedBy(ctx, err) == "" {
			return Manifest{}, err
		}
		// Verified bytes in hand: serve them; the tag is recorded by a later request.
		c.log.Warn("storing a manifest failed; serving it uncached", "repo", repo.String(), "tag", tag, "error", err.Error())
		return m, nil
	}
	if err := c.putTag(ctx, repo, tag, m.Digest); err != nil {
		c.log.Warn("recording tag failed", "repo", repo.String(), "tag", tag, "error", err.Error())
	}
	return m, nil
}

// putTag records that upstream resolved tag to d now.
func (c *Cache) putTag(ctx context.Context, repo Repo, tag string, d v1.Hash) error {
	t := metadata.Tag{Digest: d, CheckedAt: c.opts.now()}
	if err := c.meta.PutTag(ctx, repo.String(), tag, t); err != nil {
		return err
	}
	c.lookups.putTag(repo, tag, t)
	return nil
}

// revalidate asks upstream whether the tag still points at cached's digest.
func (c *Cache) revalidate(ctx context.Context, repo Repo, tag string, cached Manifest) (Manifest, string, error) {
	desc, err := c.up.HeadManifest(ctx, repo.Registry, repo.Path, tag)
	c.m.upstream("HEAD", kindManifest, err)
	if err != nil {
		c.log.Warn("tag revalidation failed; serving the cached manifest",
			"repo", repo.String(), "tag", tag, "digest", cached.Digest.String(), "error", err.Error())
		return cached, "stale", nil
	}
	if desc.Digest == cached.Digest {
		c.m.revalidated("unchanged")
		if err := c.putTag(ctx, repo, tag, cached.Digest); err != nil {
			c.log.Warn("recording tag check failed", "repo", repo.String(), "tag", tag, "error", err.Error())
		}
		return cached, "hit", nil
	}
	// The tag moved: fetch the new manifest by its digest, so a second move in between
	// cannot make us store bytes under the wrong digest.
	m, err := c.loadManifest(ctx, repo, desc.Digest)
	if errors.Is(err, errMiss) {
		m, err = c.fetchDigest(ctx, repo, desc.Digest)
	}
	if err != nil {
		c.log.Warn("fetching the new manifest of a moved tag failed; serving the cached one",
			"repo", repo.String(), "tag", tag, "new_digest", desc.Digest.String(), "error", err.Error())
		return cached, "stale", nil
	}
	c.m.revalidated("changed")
	if err := c.putTag(ctx, repo, tag, m.Digest); err != nil {
		c.log.Warn("recording tag failed", "repo", repo.String(), "tag", tag, "error", err.Error())
	}
	return m, "miss", nil
}

// cachedTag returns the tag's cached manifest and whether it is within the TTL; errMiss
// when the tag (or its manifest object) is not cached. remembered lets a row read or written
// here less than the lookup TTL ago answer (the warm path); without it the store is read (the
// path that decides whether to ask upstream, and waits for other replicas).
func (c *Cache) cachedTag(ctx context.Context, repo Repo, tag string, remembered bool) (Manifest, bool, error) {
	t, ok := metadata.Tag{}, false
	if remembered {
		t, ok = c.lookups.tag(repo, tag)
	}
	if !ok {
		var err error
		t, err = c.meta.GetTag(ctx, repo.String(), tag)
		if errors.Is(err, metadata.ErrNotFound) {
			return Manifest{}, false, errMiss
		}
		if err != nil {
			return Manifest{}, false, fmt.Errorf("reading tag %s:%s: %w", repo, tag, metaErr(err))
		}
		c.lookups.putTag(repo, tag, t)
	}
	m, err := c.loadManifest(ctx, repo, t.Digest)
	if err != nil {
		return Manifest{}, false, err
	}
	return m, c.opts.now().Sub(t.CheckedAt) < c.opts.tagTTL, nil
}

// fetchDigest makes the digest's manifest available under repo, once across replicas when
// they are coordinated.
func (c *Cache) fetchDigest(ctx context.Context, repo Repo, d v1.Hash) (Manifest, error) {
	return c.leased(ctx, "manifest:"+repo.String()+"@"+d.String(), func(ctx context.Context) (Manifest, error) {
		return c.loadManifest(ctx, repo, d)
	}, func(ctx context.Context) (Manifest, error) {
		return c.fetchDigestNow(ctx, repo, d)
	})
}

// fetchDigestNow makes the digest's manifest available under repo: linked from another
// repository's copy when upstream confirms repo has it (a HEAD), fetched otherwise.
func (c *Cache) fetchDigestNow(ctx context.Context, repo Repo, d v1.Hash) (Manifest, error) {
	if m, err := c.loadManifest(ctx, repo, d); err == nil || !errors.Is(err, errMiss) {
		return m, err
	}
	if _, err := c.blobs.Stat(ctx, d); err == nil {
		desc, herr := c.up.HeadManifest(ctx, repo.Registry, repo.Path, d.String())
		c.m.upstream("HEAD", kindManifest, herr)
		if herr != nil {
			return Manifest{}, upstreamError(herr, kindManifest)
		}
		body, err := c.readObject(ctx, d)
		if err == nil {
			m, verr := c.verifyManifest(body, desc.MediaType, d)
			if verr == nil && desc.Digest == d {
				if err := c.recordManifest(ctx, repo, m); err != nil {
					if degradedBy(ctx, err) == "" {
						return Manifest{}, fmt.Errorf("linking manifest %s: %w", d, err)
					}
					c.log.Warn("linking a confirmed manifest failed; serving it unlinked", "digest", d.String(), "repo", repo.String(), "error", err.Error())
				}
				return m, nil
			}
		}
		// The object is unreadable or wrong: fall through and fetch it again.
	}
	body, desc, err := c.up.GetManifest(ctx, repo.Registry, repo.Path, d.String())
	c.m.upstream("GET", kindManifest, err)
	if err != nil {
		return Manifest{}, upstreamError(err, kindManifest)
	}
	m, err := c.verifyManifest(body, desc.MediaType, d)
	if err != nil {
		return Manifest{}, err
	}
	if err := c.storeManifest(ctx, repo, m); err != nil {
		if degradedBy(ctx, err) == "" {
			return Manifest{}, err
		}
		c.log.Warn("storing a manifest failed; serving it uncached", "digest", d.String(), "repo", repo.String(), "error", err.Error())
	}
	return m, nil
}

// verifyManifest checks size and digest of upstream bytes. want is the digest that was asked
// for or announced by upstream (zero: none).
func (c *Cache) verifyManifest(body []byte, mediaType string, want v1.Hash) (Manifest, error) {
	if int64(len(body)) > c.opts.maxManifestSize {
		return Manifest{}, fmt.Errorf("%w: %d bytes, cap %d", ErrTooLarge, len(body), c.opts.maxManifestSize)
	}
	sum := sha256.Sum256(body)
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if want != (v1.Hash{}) && got != want {
		return Manifest{}, fmt.Errorf("%w: upstream manifest has digest %s, expected %s", ErrUnavailable, got, want)
	}
	if mediaType == "" {
		// Upstream gave no type: read it from the body, as the upstream client does.
		mt, err := oci.ManifestMediaType("", body)
		if err != nil {
			return Manifest{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		mediaType = mt
	}
	return Manifest{Digest: got, MediaType: mediaType, Body: body}, nil
}

// storeManifest commits the verified bytes, then records them (object first, then rows).
func (c *Cache) storeManifest(ctx context.Context, repo Repo, m Manifest) error {
	if err := c.putObject(ctx, m.Digest, m.Body); err != nil {
		return blobErr(err)
	}
	return c.recordManifest(ctx, repo, m)
}

func (c *Cache) putObject(ctx context.Context, d v1.Hash, body []byte) error {
	w, err := c.blobs.Create(ctx, d)
	if err != nil {
		return fmt.Errorf("storing %s: %w", d, err)
	}
	if _, err := w.Write(body); err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("storing %s: %w", d, err)
	}
	if err := w.Commit(ctx); err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("committing %s: %w", d, err)
	}
	return nil
}

// loadManifest returns a manifest linked to repo, re-verified (manifests are small). A row
// whose object is missing or damaged is forgotten and reported as errMiss: the self-healing
// path.
func (c *Cache) loadManifest(ctx context.Context, repo Repo, d v1.Hash) (Manifest, error) {
	row, remembered := c.lookups.manifest(repo, d)
	if !remembered {
		var err error
		row, err = c.meta.GetManifest(ctx, repo.String(), d)
		if errors.Is(err, metadata.ErrNotFound) {
			return Manifest{}, errMiss
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("reading manifest %s: %w", d, metaErr(err))
		}
	}
	if body, ok := c.bodies.get(d, row.Size); ok {
		if !remembered {
			c.lookups.putManifest(repo, row)
		}
		return Manifest{Digest: d, MediaType: row.MediaType, Body: body}, nil
	}
	// Clients that ask for the same manifest at once share one read: a hundred requests
	// for a 4 MiB manifest no process holds yet would otherwise each read and hash their own
	// copy at the same moment (the stalled-readers benchmark saw the peak RSS double).
	body, err := shared(ctx, c, "body\x00"+d.String(), func(ctx context.Context) ([]byte, error) {
		return c.readVerified(ctx, d, row.Size)
	})
	if err == nil {
		if !remembered {
			c.lookups.putManifest(repo, row)
		}
		return Manifest{Digest: d, MediaType: row.MediaType, Body: body}, nil
	}
	if !errors.Is(err, errDamaged) && !errors.Is(err, blobstore.ErrNotFound) {
		return Manifest{}, fmt.Errorf("reading manifest %s: %w", d, blobErr(err))
	}
	c.heal(ctx, d, "manifest")
	return Manifest{}, errMiss
}

// errDamaged means a stored object's bytes do not match its digest or recorded size.
var errDamaged = errors.New("stored object does not match its digest")

// readVerified reads the stored object d, checks its size and digest, and returns the copy
// every request shares (c.bodies).
func (c *Cache) readVerified(ctx context.Context, d v1.Hash, size int64) ([]byte, error) {
	if body, ok := c.bodies.get(d, size); ok {
		return body, nil
	}
	body, err := c.readObject(ctx, d)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	if int64(len(body)) != size || hex.EncodeToString(sum[:]) != d.Hex {
		return nil, errDamaged
	}
	return c.bodies.put(d, body), nil
}

func (c *Cache) readObject(ctx context.Context, d v1.Hash) ([]byte, error) {
	rc, err := c.blobs.Open(ctx, d, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(rc, c.opts.maxManifestSize+1)); err != nil {
		return nil, fmt.Errorf("reading %s: %w", d, err)
	}
	return buf.Bytes(), nil
}

// heal forgets a digest whose object is missing or damaged, so that it is fetched again.
func (c *Cache) heal(ctx context.Context, d v1.Hash, what string) {
	c.lookups.forget(d)
	c.verified.forget(d)
	c.m.healed(what)
	c.log.Warn("cached object missing or damaged; forgetting it so it is fetched again",
		"digest", d.String(), "kind", what)
	if err := c.blobs.Delete(ctx, d); err != nil {
		c.log.Warn("deleting damaged object failed", "digest", d.String(), "error", err.Error())
	}
	if err := c.meta.Forget(ctx, d); err != nil {
		c.log.Warn("forgetting missing object failed", "digest", d.String(), "error", err.Error())
	}
}

// shared runs fn once for concurrent callers with the same key. fn gets a context detached
// from any one client (bounded by the fill timeout): a client leaving does not fail the
// others. Each caller still stops waiting when its own context ends.
func shared[T any](ctx context.Context, c *Cache, key string, fn func(context.Context) (T, error)) (T, error) {
	ch := c.manifests.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.fillTimeout)
		defer cancel()
		return fn(fctx)
	})
	select {
	case r := <-ch:
		v, _ := r.Val.(T)
		return v, r.Err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
