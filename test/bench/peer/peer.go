// Package peer runs distribution v3's registry (the peer hubcache is measured against) for a
// benchmark: in proxy mode in front of an upstream, on the filesystem or on an S3 bucket, one
// process per replica. The binary comes from hack/tools.sh distribution (HUBCACHE_DISTRIBUTION).
package peer

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubcache/hubcache/test/s3server"
	"github.com/hubcache/hubcache/test/testenv"
)

// Config says where a replica stores blobs and what it proxies.
type Config struct {
	// Upstream is the registry distribution proxies (remoteurl); "" runs a plain registry.
	Upstream string
	// Dir holds the blobs on the filesystem; ignored when S3 is set. "" uses a temporary folder.
	Dir string
	// S3 stores the blobs in this server's bucket under Prefix, streamed through the registry
	// (no redirects), as hubcache's S3 rows stream without --s3-redirect.
	S3     *s3server.Server
	Prefix string
}

// Start runs one replica and returns its base URL (http://127.0.0.1:PORT). It stops when the
// benchmark ends.
func Start(tb testing.TB, c Config) string {
	tb.Helper()
	bin := testenv.Env(tb, "HUBCACHE_DISTRIBUTION", `hack/tools.sh distribution && eval "$(hack/tools.sh env)"`)
	dir := tb.TempDir()
	addr := testenv.FreeAddr(tb)
	var storage string
	if c.S3 != nil {
		storage = fmt.Sprintf(`  s3:
    accesskey: %s
    secretkey: %s
    region: %s
    regionendpoint: %s
    forcepathstyle: true
    bucket: %s
    rootdirectory: /%s
    secure: false
  redirect:
    disable: true
`, c.S3.AccessKey, c.S3.SecretKey, c.S3.Region, c.S3.Endpoint, c.S3.Bucket, strings.Trim(c.Prefix, "/"))
	} else {
		root := c.Dir
		if root == "" {
			root = filepath.Join(dir, "data")
		}
		storage = fmt.Sprintf("  filesystem:\n    rootdirectory: %s\n", root)
	}
	cfg := "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n" + storage +
		"  delete:\n    enabled: true\nhttp:\n  addr: " + addr + "\n"
	if c.Upstream != "" {
		cfg += "proxy:\n  remoteurl: " + c.Upstream + "\n"
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", cfgPath)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	logPath := filepath.Join(dir, "distribution.log")
	logf, err := os.Create(logPath)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatalf("starting distribution: %v", err)
	}
	tb.Cleanup(func() { cancel(); _ = cmd.Wait(); _ = logf.Close() })
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/v2/"); err == nil {
			resp.Body.Close()
			return base
		}
	}
	out, _ := os.ReadFile(logPath)
	tb.Fatalf("distribution did not start at %s:\n%s", base, out)
	return ""
}
