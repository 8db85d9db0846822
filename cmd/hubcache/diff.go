package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hubcache/hubcache/webhook/manifest"
	"github.com/hubcache/hubcache/webhook/report"
	"github.com/hubcache/hubcache/webhook/rewrite"
	"github.com/hubcache/hubcache/webhook/visibility"
)

// diffOptions are the flags of `hubcache diff`.
type diffOptions struct {
	filenames     []string
	kustomize     string
	cached        bool
	proxy         proxyClientOptions
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
		Use:   "diff (-f FILE|DIR|- ... | -k DIR | --cluster [--cached])",
		Short: "Show which images the webhook would rewrite, without changing anything",
		Long: `diff runs the webhook's rewrite plan over manifests (-f: files, folders searched
recursively for *.yaml, *.yml and *.json, or - for standard input, read as kubectl apply -f
reads them; -k: a kustomization, built as kubectl diff -k builds it) or over the Pods and
workloads of a live cluster (--cluster), and reports what would change. A duplicate key in a
manifest is an error. Objects of other kinds that carry images (custom resources with pod
templates) get a warning on standard error.

With --proxy, the Docker Hub repositories of pods with imagePullSecrets are checked with the
cache as the webhook checks them (private-repository, visibility-unknown); without it their
rewrites say visibility-unchecked.

--cluster --cached lists instead the live Pods whose images point at the cache (--target):
while any is left, the node entry point must stay.

Exit status: 0 when nothing would change (--cached: no Pod points at the cache), 1 when some
image would be rewritten (--cached: some Pod points at the cache), 2 on error.`,
		Example: `  hubcache diff -f deploy/
  hubcache diff -k overlays/prod -o markdown
  kustomize build overlays/prod | hubcache diff -f - -o markdown
  hubcache diff --cluster -A -o json
  hubcache diff --cluster -A --cached`,
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
	f.StringVarP(&o.kustomize, "kustomize", "k", "", "kustomization folder, built as kubectl diff -k builds it")
	f.BoolVar(&o.cached, "cached", false, "with --cluster: list the live Pods whose images point at the cache (--target)")
	f.StringVarP(&o.output, "output", "o", string(report.FormatDiff), "output format: diff, json or markdown")
	f.StringVar(&o.target, "target", rewrite.DefaultTarget, "host[:port] rewritten references point at")
	f.StringArrayVar(&o.exclude, "exclude", nil, `glob of images left alone, e.g. "docker.io/library/busybox*"; repeatable`)
	f.BoolVar(&o.cluster, "cluster", false, "report the live Pods and workloads of the cluster instead of manifests")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file for --cluster (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&o.context, "context", "", "kubeconfig context for --cluster")
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace for --cluster (default: the context's)")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "every namespace, for --cluster")
	o.proxy.addFlags(f, "ask the cache at this URL whether the Docker Hub repositories of pods with imagePullSecrets are public, as the webhook with --proxy does")
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
	vis, err := o.proxy.client()
	if err != nil {
		return false, err
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if o.cached {
		cs, err := o.listCached(ctx)
		if err != nil {
			return false, err
		}
		if err := report.WriteCached(stdout, format, cs); err != nil {
			return false, err
		}
		return len(cs) > 0, nil
	}

	var (
		ws    []manifest.Workload
		modes map[string]string
		opts  = report.Options{Color: format == report.FormatDiff && colorTerminal(stdout)}
	)
	if o.cluster {
		ws, modes, err = o.listCluster(ctx)
	} else {
		ws, err = o.readManifests(stdin, cmd.ErrOrStderr())
	}
	if err != nil {
		return false, err
	}
	entries := report.Entries(ws, policy)
	if vis != nil {
		lookupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		entries, err = report.CheckedEntries(lookupCtx, ws, policy, vis.Lookup, visibility.MaxRepositories)
		cancel()
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "hubcache diff: warning: asking %s about visibility: %v\n", o.proxy.url, err)
		}
	}
	if o.cluster {
		entries, opts.Modes = report.WithModes(entries, modes), modes
	}
	if err := report.Write(stdout, format, entries, opts); err != nil {
		return false, err
	}
	return report.Changed(entries), nil
}

// readManifests reads every -f and the -k kustomization, writing warnings to stderr.
func (o *diffOptions) readManifests(stdin io.Reader, stderr io.Writer) ([]manifest.Workload, error) {
	var ws []manifest.Workload
	add := func(got []manifest.Workload, warnings []string, err error) error {
		if err != nil {
			return err
		}
		for _, w := range warnings {
			fmt.Fprintf(stderr, "hubcache diff: warning: %s\n", w)
		}
		ws = append(ws, got...)
		return nil
	}
	for _, name := range o.filenames {
		if err := add(manifest.Read(name, stdin)); err != nil {
			return nil, err
		}
	}
	if o.kustomize != "" {
		if err := add(manifest.ReadKustomization(o.kustomize)); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

// check rejects flag combinations that would silently do something else than asked.
func (o *diffOptions) check(cmd *cobra.Command) error {
	manifests := len(o.filenames) > 0 || o.kustomize != ""
	switch {
	case o.cluster && manifests:
		return errors.New("give either -f/-k or --cluster, not both")
	case !o.cluster && !manifests:
		return errors.New("nothing to read: give -f FILE|DIR|-, -k DIR or --cluster")
	case o.cached && !o.cluster:
		return errors.New("--cached lists live Pods: it needs --cluster")
	case o.cached && o.proxy.url != "":
		return errors.New("--cached lists what already points at the cache: --proxy does not apply")
	case o.allNamespaces && o.namespace != "":
		return errors.New("give either -n or -A, not both")
	}
	stdins := 0
	for _, name := range o.filenames {
		if name == manifest.Stdin {
			stdins++
		}
	}
	if stdins > 1 {
		return errors.New("-f - is given more than once: standard input can be read only once")
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

// clusterClient connects with the usual kubeconfig rules and returns the namespace in scope
// ("" for -A).
func (o *diffOptions) clusterClient() (client.Client, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.context}
	overrides.Context.Namespace = o.namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	namespace := ""
	if !o.allNamespaces {
		namespace, _, err = cc.Namespace()
		if err != nil {
			return nil, "", fmt.Errorf("finding the namespace: %w", err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return nil, "", fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, namespace, nil
}

// listCluster lists the namespace in scope.
func (o *diffOptions) listCluster(ctx context.Context) ([]manifest.Workload, map[string]string, error) {
	c, namespace, err := o.clusterClient()
	if err != nil {
		return nil, nil, err
	}
	return report.ClusterWorkloads(ctx, c, namespace)
}

// listCached lists the Pods of the namespace in scope that point at the cache.
func (o *diffOptions) listCached(ctx context.Context) ([]report.CachedImage, error) {
	c, namespace, err := o.clusterClient()
	if err != nil {
		return nil, err
	}
	return report.CachedPods(ctx, c, namespace, o.target)
}

// colorTerminal reports whether w is a terminal that wants colour (NO_COLOR unset).
func colorTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}
