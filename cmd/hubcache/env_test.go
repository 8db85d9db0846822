package main

import (
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestEveryListFlagIsSplitFromItsEnvironmentVariableLikeTheFlag(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  []string
	}{
		{"two items are split at the comma", "a*,b*", []string{"a*", "b*"}},
		{"one item stays one item", "a*", []string{"a*"}},
		{"a quoted item keeps its comma", `"a,b",c`, []string{"a,b", "c"}},
	}
	seen := 0
	for _, cmd := range newRootCmd().Commands() {
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			kind := f.Value.Type()
			if kind != "stringArray" && kind != "stringSlice" {
				return
			}
			seen++
			for _, tt := range tests {
				t.Run(cmd.Name()+" --"+f.Name+": "+tt.name, func(t *testing.T) {
					fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
					var got []string
					if kind == "stringArray" {
						fs.StringArrayVar(&got, f.Name, []string{"default"}, "")
					} else {
						fs.StringSliceVar(&got, f.Name, []string{"default"}, "")
					}
					if err := setFromEnv(fs, fs.Lookup(f.Name), tt.value); err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, tt.want) {
						t.Fatalf("%s=%q gave %q, want %q", envName(f.Name), tt.value, got, tt.want)
					}
				})
			}
		})
	}
	if seen == 0 {
		t.Fatal("no list-valued flag found")
	}
}

func TestAMalformedListInTheEnvironmentIsAnError(t *testing.T) {
	t.Setenv("HUBCACHE_EXCLUDE", `"unclosed,b`)
	root := newRootCmd()
	root.SetIn(strings.NewReader(""))
	root.SetOut(io.Discard)
	root.SetArgs([]string{"diff", "-f", "-"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "HUBCACHE_EXCLUDE") {
		t.Fatalf("error %v, want one naming HUBCACHE_EXCLUDE", err)
	}
}

func TestHubcacheExcludeWithTwoPatternsExcludesBoth(t *testing.T) {
	t.Setenv("HUBCACHE_EXCLUDE", "docker.io/library/nginx*,docker.io/library/busybox*")
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[
{"name":"a","image":"nginx:1.27"},{"name":"b","image":"busybox"}]}}`
	code, stdout, stderr := runDiff(t, pod, "-f", "-", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d (want 0: both images excluded)\n%s\n%s", code, stdout, stderr)
	}
}
