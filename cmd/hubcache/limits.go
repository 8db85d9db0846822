package main

import (
	"github.com/spf13/pflag"

	"github.com/hubcache/hubcache/proxy/limits"
)

// addLimitFlags registers the per-server limits (docs/security.md) with defaults d.
func addLimitFlags(fl *pflag.FlagSet, c *limits.Config, d limits.Config) {
	fl.IntVar(&c.MaxConnections, "max-connections", d.MaxConnections, "most open client connections; more wait in the listen backlog (0: no cap)")
	fl.IntVar(&c.MaxInFlight, "max-in-flight", d.MaxInFlight, "most requests handled at once; more are answered 503 with Retry-After (0: no cap)")
	fl.DurationVar(&c.WriteProgress, "write-progress-timeout", d.WriteProgress, "a client that reads no bytes of a response for this long is disconnected (0: never)")
	fl.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", d.ReadHeaderTimeout, "bound on reading a request's headers")
	fl.DurationVar(&c.IdleTimeout, "idle-timeout", d.IdleTimeout, "close keep-alive connections idle for this long")
}

// nodeLimitDefaults fit the node's 128 MiB memory limit.
func nodeLimitDefaults() limits.Config {
	d := limits.Defaults()
	d.MaxConnections = 1024
	d.MaxInFlight = 512
	return d
}
