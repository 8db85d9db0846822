package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hubcache/hubcache/webhook/manifest"
	"github.com/hubcache/hubcache/webhook/report"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

// diffOptions are the flags of `hubcache diff`.
type diffOptions struct {
	filenames     []string
	output        string
	target        string
	exclude       []string
	cluster       bool
	kubeconfig    string
	context       string
	namespace     string
	allNamespaces bool
}

func newDiffCmd() *cobra.Command {
	var o diffOptions
	cmd := &cobra.Command{
		Use:   "diff (-f FILE|DIR|- ... | --cluster)",
		Short: "Show which images the webhook would rewrite, without changing anything",
		Long: `diff runs the webhook's rewrite plan over manifests (-f: files, folders searched
recursively for *.yaml, *.yml and *.json, or - for standard input) or over the Pods and
workloads of a live cluster (--cluster), and reports what would change.

Exit status: 0 when nothing would change, 1 when some image would be rewritten, 2 on error.`,
		Example: `  hubcache diff -f deploy/
  kustomize build overlays/prod | hubcache diff -f - -o markdown
  hubcache diff --cluster -A -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			changed, err := o.run(cmd.InOrStdin(), cmd.OutOrStdout(), cmd)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("diff: %w", err)}
			}
			if changed {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.filenames, "filename", "f", nil, "manifest file, folder (recursive) or - for standard input; repeatable")
	f.StringVarP(&o.output, "output", "o", string(report.FormatDiff), "output format: diff, json or markdown")
	f.StringVar(&o.target, "target", rewrite.DefaultTarget, "host[:port] rewritten references point at")
	f.StringArrayVar(&o.exclude, "exclude", nil, `glob of images left alone, e.g. "docker.io/library/busybox*"; repeatable`)
	f.BoolVar(&o.cluster, "cluster", false, "report the live Pods and workloads of the cluster instead of manifests")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file for --cluster (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&o.context, "context", "", "kubeconfig context for --cluster")
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace for --cluster (default: the context's)")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "every namespace, for --cluster")
	return cmd
}

// run writes the report and says whether anything would change.
func (o *diffOptions) run(stdin io.Reader, stdout io.Writer, cmd *cobra.Command) (bool, error) {
	format, err := report.ParseFormat(o.output)
	if err != nil {
		return false, err
	}
	policy := rewrite.Policy{Target: o.target, Exclude: o.exclude}
	if err := policy.Validate(); err != nil {
		return false, err
	}
	if err := o.check(cmd); err != nil {
		return false, err
	}

	var (
		entries []report.Entry
		opts    = report.Options{Color: format == report.FormatDiff && colorTerminal(stdout)}
	)
	if o.cluster {
		entries, opts.Modes, err = o.listCluster(cmd, policy)
		if err != nil {
			return false, err
		}
	} else {
		var ws []manifest.Workload
		for _, name := range o.filenames {
			got, err := manifest.Read(name, stdin)
			if err != nil {
				return false, err
			}
			ws = append(ws, got...)
		}
		entries = report.Entries(ws, policy)
	}
	if err := report.Write(stdout, format, entries, opts); err != nil {
		return false, err
	}
	return report.Changed(entries), nil
}

// check rejects flag combinations that would silently do something else than asked.
func (o *diffOptions) check(cmd *cobra.Command) error {
	switch {
	case o.cluster && len(o.filenames) > 0:
		return errors.New("give either -f or --cluster, not both")
	case !o.cluster && len(o.filenames) == 0:
		return errors.New("nothing to read: give -f FILE|DIR|- or --cluster")
	case o.allNamespaces && o.namespace != "":
		return errors.New("give either -n or -A, not both")
	}
	if !o.cluster {
		for _, name := range []string{"kubeconfig", "context", "namespace", "all-namespaces"} {
			if cmd.Flags().Changed(name) {
				return fmt.Errorf("--%s only applies with --cluster", name)
			}
		}
	}
	return nil
}

// listCluster connects with the usual kubeconfig rules and lists the namespace in scope.
func (o *diffOptions) listCluster(cmd *cobra.Command, p rewrite.Policy) ([]report.Entry, map[string]string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.context}
	overrides.Context.Namespace = o.namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	namespace := ""
	if !o.allNamespaces {
		namespace, _, err = cc.Namespace()
		if err != nil {
			return nil, nil, fmt.Errorf("finding the namespace: %w", err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return report.ListCluster(cmd.Context(), c, namespace, p)
}

// colorTerminal reports whether w is a terminal that wants colour (NO_COLOR unset).
func colorTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}
