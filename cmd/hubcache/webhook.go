package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner of webhook): replace this stub.
func newWebhookCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "webhook",
		Short: "not built yet",
		RunE:  func(*cobra.Command, []string) error { return errors.New("webhook: not built yet") },
	}
}
