package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/hubcache/hubcache/webhook/admission"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

type webhookOptions struct {
	listen        string
	certDir       string
	target        string
	exclude       []string
	metricsListen string
	healthListen  string
	logLevel      string
	proxy         proxyClientOptions
}

func newWebhookCmd() *cobra.Command {
	o := webhookOptions{}
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Serve the admission webhook that rewrites Docker Hub images to the cache",
		Long: `Serve the mutating admission webhook over TLS.

Namespaces labelled hubcache.io/mode=enabled are sent to ` + admission.PathMutate + `, which rewrites
Docker Hub images to --target; hubcache.io/mode=dry-run namespaces are sent to ` + admission.PathDryRun + `,
which changes nothing and returns one admission warning per would-be rewrite. Health checks
(/healthz, /readyz) are served over plain HTTP on --health-listen, Prometheus metrics on
--metrics-listen.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runWebhook(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", ":9443", "host:port of the TLS webhook server")
	f.StringVar(&o.certDir, "cert-dir", "/etc/hubcache/tls", "directory holding tls.crt and tls.key (reloaded when they change)")
	f.StringVar(&o.target, "target", rewrite.DefaultTarget, "host:port that rewritten images point at (the node-local entry point)")
	f.StringArrayVar(&o.exclude, "exclude", nil, "image pattern to leave alone, e.g. 'docker.io/library/postgres*' (repeatable)")
	f.StringVar(&o.metricsListen, "metrics-listen", ":8080", "host:port serving /metrics over HTTP (empty: off)")
	f.StringVar(&o.healthListen, "health-listen", ":8081", "host:port serving /healthz and /readyz over HTTP (empty: off)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	o.proxy.addFlags(f, "ask the cache at this URL (its Service, e.g. https://hubcache.hubcache-system.svc:5000) whether the Docker Hub repositories of a Pod with imagePullSecrets are public; without it such Pods are rewritten unchecked")
	return cmd
}

func runWebhook(ctx context.Context, o webhookOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", o.logLevel, err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// controller-runtime's webhook server logs through its own global logger.
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))

	host, port, err := splitListen(o.listen)
	if err != nil {
		return err
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Stat(filepath.Join(o.certDir, name)); err != nil {
			return fmt.Errorf("--cert-dir %s: %w", o.certDir, err)
		}
	}

	reg, err := newMetricsRegistry("webhook")
	if err != nil {
		return err
	}
	metrics, err := admission.NewMetrics(reg)
	if err != nil {
		return err
	}

	srv := webhook.NewServer(webhook.Options{
		Host:    host,
		Port:    port,
		CertDir: o.certDir,
		TLSOpts: []func(*tls.Config){admission.ConfigureTLS},
	})
	policy := rewrite.Policy{Target: o.target, Exclude: o.exclude}
	opts := []admission.Option{admission.WithLogger(log), admission.WithMetrics(metrics)}
	vis, err := o.proxy.client()
	if err != nil {
		return err
	}
	if vis != nil {
		opts = append(opts, admission.WithVisibility(vis))
	} else {
		log.Warn("no --proxy: images of Pods with imagePullSecrets are rewritten without checking that the cache serves them")
	}
	if err := admission.Register(srv, policy, opts...); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Start(ctx); err != nil {
			return fmt.Errorf("webhook server on %s: %w", o.listen, err)
		}
		return nil
	})
	if o.healthListen != "" {
		ready := srv.StartedChecker()
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			if err := ready(r); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		g.Go(func() error { return serveHTTP(ctx, "health", o.healthListen, mux) })
	}
	if o.metricsListen != "" {
		mux := http.NewServeMux()
		gatherers := prometheus.Gatherers{reg, ctrlmetrics.Registry}
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{}))
		g.Go(func() error { return serveHTTP(ctx, "metrics", o.metricsListen, mux) })
	}
	log.Info("webhook starting", "listen", o.listen, "certDir", o.certDir, "target", policy.Target,
		"exclude", o.exclude, "proxy", o.proxy.url, "metricsListen", o.metricsListen, "healthListen", o.healthListen)
	return g.Wait()
}

// splitListen parses --listen. A port is required: controller-runtime would read 0 as 9443.
func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("--listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("--listen %q: port must be 1-65535", listen)
	}
	return host, port, nil
}

// serveHTTP serves h on addr until ctx ends.
func serveHTTP(ctx context.Context, name, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listener on %s: %w", name, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return httpRunner(name+" server on "+addr, srv, ln, 5*time.Second)(ctx)
}
