package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// GetBlob starts downloading a blob and returns its body and size (-1 when upstream did not
// say). Redirects (Docker Hub sends blobs from a CDN) are followed. The bytes are not
// verified here: the caller hashes them while it streams. The response headers must arrive
// within the client's timeout; after that the body is bounded by ctx only. Close the body.
func (c *Client) GetBlob(ctx context.Context, registry, repo string, d v1.Hash) (io.ReadCloser, int64, error) {
	r, rr, _, err := c.resolve(registry, repo, d.String())
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.withHeaderTimeout(ctx, func(ctx context.Context) (*http.Response, error) {
		return c.send(ctx, r, rr, http.MethodGet, "/blobs/"+d.String(), nil)
	})
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("GET %s blob %s: %w: status %d", repo, d, ErrUnavailable, resp.StatusCode)
	}
	return resp.Body, resp.ContentLength, nil
}

// HeadBlob asks whether upstream has a blob in repo and returns its size (-1 when upstream
// did not say).
func (c *Client) HeadBlob(ctx context.Context, registry, repo string, d v1.Hash) (int64, error) {
	r, rr, _, err := c.resolve(registry, repo, d.String())
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	resp, err := c.send(ctx, r, rr, http.MethodHead, "/blobs/"+d.String(), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}
