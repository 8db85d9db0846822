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
)

// fillFlags configure fill sharing between replicas (docs/replicas.md). They matter only
// with --metadata postgres://….
type fillFlags struct {
	advertise string
	secret    string
	leaseTTL  time.Duration
}

func addFillFlags(fl *pflag.FlagSet, f *fillFlags) {
	fl.StringVar(&f.advertise, "advertise-addr", "", "host:port where the other replicas reach this one's fills (default: $POD_IP and the --listen port)")
	fl.StringVar(&f.secret, "fill-secret", "", "shared secret the replicas present to each other's /internal/fills/ endpoint (required with --metadata postgres://)")
	fl.DurationVar(&f.leaseTTL, "fill-lease-ttl", fillcoord.DefaultTTL, "how long a dead replica's fill lease blocks the others before one takes the fill over")
}

// fillOption turns the flags into the server option; listen is the registry listener.
func fillOption(f fillFlags, listen string) (server.Option, error) {
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
	return server.WithFillSharing(server.FillSharing{Advertise: adv, Secret: f.secret, LeaseTTL: f.leaseTTL}), nil
}
