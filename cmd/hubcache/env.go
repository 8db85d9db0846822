package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envName is the environment variable that sets a flag: --tag-ttl → HUBCACHE_TAG_TTL.
func envName(flag string) string {
	return "HUBCACHE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv makes every flag of cmd settable through its HUBCACHE_… variable. A flag given on
// the command line wins over the environment. The variable is named in the flag's help.
func bindEnv(cmd *cobra.Command) {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		f.Usage = fmt.Sprintf("%s (env %s)", f.Usage, envName(f.Name))
	})
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		var err error
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if err != nil || f.Changed {
				return
			}
			v, ok := os.LookupEnv(envName(f.Name))
			if !ok {
				return
			}
			if serr := c.Flags().Set(f.Name, v); serr != nil {
				err = fmt.Errorf("environment %s=%q: %w", envName(f.Name), v, serr)
			}
		})
		if err != nil {
			return err
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
}
