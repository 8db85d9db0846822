package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/hubcache/hubcache/proxy/fillcoord"
	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/proxy/tlsfiles"
)

// fillFlags configure fill sharing between replicas (docs/replicas.md). They matter only
// with --metadata postgres://….
type fillFlags struct {
	advertise string
	secret    string
	leaseTTL  time.Duration
	// serverName is the DNS name the replicas verify in each other's certificate when the
	// registry listener serves TLS.
	serverName string
}

// defaultFillServerName is the proxy certificate's DNS name the replicas verify when they
// read each other's fills over TLS: the first name of manifests/base/proxy/certificate.yaml,
// the only one without the namespace.
const defaultFillServerName = "hubcache-proxy"

func addFillFlags(fl *pflag.FlagSet, f *fillFlags) {
	fl.StringVar(&f.advertise, "advertise-addr", "", "host:port where the other replicas reach this one's fills (default: $POD_IP and the --listen port)")
	fl.StringVar(&f.secret, "fill-secret", "", "shared secret the replicas present to each other's /internal/fills/ endpoint (required with --metadata postgres://)")
	fl.DurationVar(&f.leaseTTL, "fill-lease-ttl", fillcoord.DefaultTTL, "how long a dead replica's fill lease blocks the others before one takes the fill over")
	fl.StringVar(&f.serverName, "fill-server-name", defaultFillServerName, "with --tls-cert-file: the DNS name of that certificate the replicas verify in each other's (they dial pod IPs); they present it as their client certificate and trust --client-ca-file (system roots without it)")
}

// fillOption turns the flags into the server option; listen is the registry listener and
// files its TLS material (nil: plain HTTP).
func fillOption(f fillFlags, listen string, files *tlsfiles.Files) (server.Option, error) {
	if f.leaseTTL < time.Second {
		return nil, errors.New("--fill-lease-ttl must be at least 1s")
	}
	adv := f.advertise
	if adv == "" {
		if ip := os.Getenv("POD_IP"); ip != "" {
			_, port, err := net.SplitHostPort(listen)
			if err != nil {
				return nil, fmt.Errorf("--listen %q: %w", listen, err)
			}
			adv = net.JoinHostPort(ip, port)
		}
	} else if _, _, err := net.SplitHostPort(adv); err != nil {
		return nil, fmt.Errorf("--advertise-addr %q: want host:port", adv)
	}
	return server.WithFillSharing(server.FillSharing{Advertise: adv, Secret: f.secret, LeaseTTL: f.leaseTTL,
		TLS: files, ServerName: f.serverName}), nil
}
