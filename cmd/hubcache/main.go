// Command hubcache is one binary for every part of hubcache: the pull-through cache (proxy),
// the node-local entry point (node), the admission webhook (webhook) and the dry-run
// reports (diff). This file only wires subcommands together.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a specific exit status (diff uses 1 for "changes found").
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "hubcache",
		Short:         "Docker Hub pull-through cache and image-rewriting admission webhook for Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newProxyCmd(),
		newNodeCmd(),
		newWebhookCmd(),
		newDiffCmd(),
		newReportCmd(),
		newVersionCmd(),
	)
	for _, c := range root.Commands() {
		bindEnv(c)
	}
	return root
}

func main() {
	err := newRootCmd().Execute()
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "hubcache:", ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "hubcache:", err)
	os.Exit(2)
}
