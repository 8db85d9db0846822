package pulls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// manifestAccept is what containerd sends when it resolves and fetches a manifest.
const manifestAccept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"

// regClient speaks the pull half of the registry API as containerd does: a request answered
// 401 with a Bearer challenge gets an anonymous token from the realm and is sent once more;
// the token is kept per repository. base is the URL up to the repository name:
// "http://hub/v2/" for Docker Hub, "http://proxy/v2/docker.io/" through hubcache.
type regClient struct {
	base string
	hc   *http.Client

	mu     sync.Mutex
	tokens map[string]string
}

func newRegClient(base string, hc *http.Client) *regClient {
	return &regClient{base: base, hc: hc, tokens: map[string]string{}}
}

// do sends one request for repo's path ("manifests/REF", "blobs/DIGEST"), with the token
// flow. The caller closes the body.
func (c *regClient) do(ctx context.Context, method, repo, path string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.base+repo+"/"+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", manifestAccept)
		c.mu.Lock()
		tok := c.tokens[repo]
		c.mu.Unlock()
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusUnauthorized || attempt > 0 {
			return resp, nil
		}
		challenge := resp.Header.Get("WWW-Authenticate")
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		tok, err = c.token(ctx, challenge)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		c.mu.Lock()
		c.tokens[repo] = tok
		c.mu.Unlock()
	}
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// token asks the challenge's realm for an anonymous token.
func (c *regClient) token(ctx context.Context, challenge string) (string, error) {
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(challenge, -1) {
		params[m[1]] = m[2]
	}
	if params["realm"] == "" {
		return "", fmt.Errorf("401 without a Bearer challenge (%q)", challenge)
	}
	q := url.Values{"service": {params["service"]}}
	if s := params["scope"]; s != "" {
		q.Set("scope", s)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, params["realm"]+"?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token endpoint: %s", resp.Status)
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("token endpoint: %w", err)
	}
	return body.Token, nil
}

// resolve is containerd's resolve step: a HEAD of the manifest, for its digest.
func (c *regClient) resolve(ctx context.Context, repo, ref string) (v1.Hash, error) {
	resp, err := c.do(ctx, http.MethodHead, repo, "manifests/"+ref)
	if err != nil {
		return v1.Hash{}, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v1.Hash{}, fmt.Errorf("HEAD %s:%s: %s", repo, ref, resp.Status)
	}
	return v1.NewHash(resp.Header.Get("Docker-Content-Digest"))
}

// manifest GETs a manifest and checks its digest when ref is one.
func (c *regClient) manifest(ctx context.Context, repo, ref string) (*v1.Manifest, v1.Hash, error) {
	resp, err := c.do(ctx, http.MethodGet, repo, "manifests/"+ref)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("GET %s:%s: %w", repo, ref, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, v1.Hash{}, fmt.Errorf("GET %s:%s: %s", repo, ref, resp.Status)
	}
	sum := sha256.Sum256(body)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if want, err := v1.NewHash(ref); err == nil && want != d {
		return nil, v1.Hash{}, fmt.Errorf("GET %s@%s: body has digest %s", repo, ref, d)
	}
	m, err := v1.ParseManifest(bytes.NewReader(body))
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("GET %s:%s: %w", repo, ref, err)
	}
	return m, d, nil
}

// blob GETs a blob and checks its digest.
func (c *regClient) blob(ctx context.Context, repo string, d v1.Hash) error {
	resp, err := c.do(ctx, http.MethodGet, repo, "blobs/"+d.String())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET blob %s: %s", d, resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return fmt.Errorf("GET blob %s: %w", d, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		return fmt.Errorf("GET blob %s: body has digest sha256:%s", d, got)
	}
	return nil
}

// pull is a whole cold pull of repo:ref: the manifest, then the config and every layer at once
// (containerd fetches layers in parallel).
func (c *regClient) pull(ctx context.Context, repo, ref string) error {
	m, _, err := c.manifest(ctx, repo, ref)
	if err != nil {
		return err
	}
	blobs := append([]v1.Hash{m.Config.Digest}, layerDigests(m)...)
	errs := make([]error, len(blobs))
	var wg sync.WaitGroup
	for i, d := range blobs {
		wg.Go(func() { errs[i] = c.blob(ctx, repo, d) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func layerDigests(m *v1.Manifest) []v1.Hash {
	out := make([]v1.Hash, 0, len(m.Layers))
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// newHTTPClient keeps up to n idle connections to one host, as n concurrent clients need.
func newHTTPClient(n int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 4 * n
	tr.MaxIdleConnsPerHost = 2 * n
	return &http.Client{Transport: tr}
}
