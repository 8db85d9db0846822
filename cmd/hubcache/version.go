package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at build time (Makefile and Dockerfile) with
// -ldflags "-X main.version=… -X main.commit=… -X main.date=…". A plain `go build` from a
// git checkout leaves commit and date empty; buildInfo then reads them from the VCS stamp Go
// records in the binary.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// build describes this binary: what `hubcache version` prints and hubcache_build_info says.
type build struct {
	Version, Commit, Date, GoVersion, Platform string
}

func buildInfo() build {
	b := build{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		var modified bool
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.time":
				if b.Date == "" {
					b.Date = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && commit == "" && b.Commit != "" {
			b.Commit += "-dirty"
		}
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	if b.Date == "" {
		b.Date = "unknown"
	}
	return b
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of hubcache, the commit and date it was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := buildInfo()
			fmt.Fprintf(cmd.OutOrStdout(), "hubcache %s (commit %s, built %s, %s, %s)\n",
				b.Version, b.Commit, b.Date, b.GoVersion, b.Platform)
			return nil
		},
	}
}
