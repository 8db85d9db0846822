package main

import (
	"encoding/csv"
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
			if serr := setFromEnv(c.Flags(), f, v); serr != nil {
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

// setFromEnv sets f from an environment value. A list-valued flag is split the way its
// comma-separated flag value is (CSV, so a quoted item may hold a comma): a stringSlice flag
// splits by itself, a stringArray flag takes one item per Set, so the value is split here.
// Otherwise HUBCACHE_EXCLUDE='a*,b*' would be one pattern that matches nothing.
func setFromEnv(fs *pflag.FlagSet, f *pflag.Flag, v string) error {
	if f.Value.Type() != "stringArray" {
		return fs.Set(f.Name, v)
	}
	items, err := splitList(v)
	if err != nil {
		return err
	}
	for _, item := range items {
		if err := fs.Set(f.Name, item); err != nil {
			return err
		}
	}
	return nil
}

// splitList splits a comma-separated list as pflag splits a stringSlice value. An empty
// value is an empty list.
func splitList(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	r := csv.NewReader(strings.NewReader(v))
	r.LazyQuotes = false
	items, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("reading a comma-separated list: %w", err)
	}
	return items, nil
}
