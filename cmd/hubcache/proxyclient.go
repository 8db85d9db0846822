package main

import (
	"errors"

	"github.com/spf13/pflag"

	"github.com/hubcache/hubcache/webhook/visibility"
)

// proxyClientOptions are the flags of a client of the proxy's API (webhook, diff): its URL
// and the files for (mutual) TLS, named as for every client of the proxy.
type proxyClientOptions struct {
	url      string
	caFile   string
	certFile string
	keyFile  string
}

func (o *proxyClientOptions) addFlags(f *pflag.FlagSet, urlHelp string) {
	f.StringVar(&o.url, "proxy", "", urlHelp)
	f.StringVar(&o.caFile, "proxy-ca-file", "", "PEM CA bundle that signed the proxy's certificate (default: system roots)")
	f.StringVar(&o.certFile, "proxy-cert-file", "", "client certificate (PEM) for mutual TLS with the proxy; with --proxy-key-file")
	f.StringVar(&o.keyFile, "proxy-key-file", "", "private key (PEM) of --proxy-cert-file")
}

// client returns the visibility client, or nil without --proxy.
func (o *proxyClientOptions) client() (*visibility.Client, error) {
	if o.url == "" {
		if o.caFile != "" || o.certFile != "" || o.keyFile != "" {
			return nil, errProxyFilesWithoutURL
		}
		return nil, nil
	}
	hc, err := visibility.HTTPClient(o.caFile, o.certFile, o.keyFile)
	if err != nil {
		return nil, err
	}
	return visibility.New(o.url, visibility.WithHTTPClient(hc))
}

var errProxyFilesWithoutURL = errors.New("--proxy-ca-file, --proxy-cert-file and --proxy-key-file need --proxy")
