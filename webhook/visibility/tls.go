package visibility

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hubcache/hubcache/proxy/tlsfiles"
)

// HTTPClient returns an HTTP client for the proxy. caFile (PEM) replaces the system roots
// when set; certFile and keyFile, both or neither, are the client certificate for mutual
// TLS. All three are reloaded when they change (proxy/tlsfiles), so certificates renewed by
// cert-manager are used without a restart, like the node entry point's.
func HTTPClient(caFile, certFile, keyFile string) (*http.Client, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--proxy-cert-file and --proxy-key-file go together")
	}
	// Loading fails at start-up, not at the first Pod.
	files, err := tlsfiles.Load(certFile, keyFile, caFile)
	if err != nil {
		return nil, fmt.Errorf("--proxy-ca-file/--proxy-cert-file/--proxy-key-file: %w", err)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = files.ClientConfig()
	t.Proxy = nil // the cache is in the cluster; an HTTP(S)_PROXY must not see its traffic
	t.MaxIdleConnsPerHost = 16
	t.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: t}, nil
}
