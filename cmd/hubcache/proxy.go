package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner of proxy): replace this stub.
func newProxyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "proxy",
		Short: "not built yet",
		RunE:  func(*cobra.Command, []string) error { return errors.New("proxy: not built yet") },
	}
}
