package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubcache/hubcache/proxy/limits"
	"github.com/hubcache/hubcache/proxy/node"
	"github.com/hubcache/hubcache/proxy/tlsfiles"
	"github.com/hubcache/hubcache/proxy/upstream"
)

type nodeFlags struct {
	listen        string
	proxy         string
	upstreams     []string
	dockerConfig  string
	metricsListen string
	proxyTimeout  time.Duration
	failAfter     int
	coolDown      time.Duration
	logLevel      string
	limits        limits.Config
	proxyCA       string
	proxyCert     string
	proxyKey      string
}

func newNodeCmd() *cobra.Command {
	f := nodeFlags{}
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run the node-local entry point: 127.0.0.1 registry that forwards to the proxy and falls back to upstream",
		Long: `node runs on every node (a hostNetwork DaemonSet) and listens on loopback, where the
kubelet pulls over plain HTTP without any node configuration. Every /v2/ request is forwarded
to the hubcache proxy Service; when the proxy is unreachable (or answers 502/503/504) the
node fetches from the upstream registry itself: degraded and uncached, but the pull goes on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runNode(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:5000", "address for registry requests; keep it on loopback (the literal 127.0.0.1, not localhost)")
	fl.StringVar(&f.proxy, "proxy", "http://hubcache-proxy.hubcache-system.svc:5000", "URL of the hubcache proxy Service")
	fl.StringArrayVar(&f.upstreams, "upstream", []string{"docker.io=https://registry-1.docker.io"}, "REGISTRY=URL of an upstream the node may fetch from when the proxy is down (repeatable or comma-separated; keep it the same as the proxy's); requests for other registries are refused")
	fl.StringVar(&f.dockerConfig, "docker-config", "", "directory with a Docker config.json holding upstream credentials (empty: anonymous)")
	fl.StringVar(&f.metricsListen, "metrics-listen", "127.0.0.1:9101", "address for /metrics, /healthz and /readyz (empty: off)")
	fl.DurationVar(&f.proxyTimeout, "proxy-timeout", 10*time.Second, "how long to wait for the proxy's response headers before falling back")
	fl.IntVar(&f.failAfter, "fallback-after", 3, "consecutive proxy connection failures that switch the node to fallback mode")
	fl.DurationVar(&f.coolDown, "probe-interval", 10*time.Second, "in fallback mode, how often one request is sent to the proxy to see if it is back")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	addLimitFlags(fl, &f.limits, nodeLimitDefaults())
	fl.StringVar(&f.proxyCA, "proxy-ca-file", "", "CA bundle that signed the proxy's certificate (with an https --proxy; reloaded when it changes)")
	fl.StringVar(&f.proxyCert, "proxy-cert-file", "", "client certificate presented to the proxy (mutual TLS; reloaded when it changes)")
	fl.StringVar(&f.proxyKey, "proxy-key-file", "", "key of --proxy-cert-file")
	return cmd
}

func runNode(ctx context.Context, f nodeFlags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "node")

	if err := f.limits.Validate(); err != nil {
		return err
	}
	proxyURL, err := url.Parse(f.proxy)
	if err != nil {
		return fmt.Errorf("--proxy: %w", err)
	}
	ups, err := upstream.ParseEndpoints(f.upstreams)
	if err != nil {
		return fmt.Errorf("--upstream: %w", err)
	}
	reg, err := newMetricsRegistry("node")
	if err != nil {
		return err
	}
	opts := []node.Option{
		node.WithLogger(log),
		node.WithRegisterer(reg),
		node.WithProxyHeaderTimeout(f.proxyTimeout),
		node.WithBreaker(f.failAfter, f.coolDown),
		node.WithLimits(f.limits),
	}
	if f.dockerConfig != "" {
		if _, err := os.Stat(f.dockerConfig + "/config.json"); err != nil {
			log.Warn("no Docker config.json: fallback fetches are anonymous", "dir", f.dockerConfig, "error", err)
		}
		opts = append(opts, node.WithKeychain(upstream.DockerConfigKeychain(f.dockerConfig)))
	}
	if f.proxyCA != "" || f.proxyCert != "" || f.proxyKey != "" {
		if proxyURL.Scheme != "https" {
			return errors.New("--proxy-ca-file, --proxy-cert-file and --proxy-key-file need an https:// --proxy")
		}
		files, err := tlsfiles.Load(f.proxyCert, f.proxyKey, f.proxyCA)
		if err != nil {
			return fmt.Errorf("--proxy-cert-file: %w", err)
		}
		opts = append(opts, node.WithProxyTLS(files.ClientConfig()))
	}
	srv, err := node.New(proxyURL, ups, opts...)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("listening beyond loopback: anyone who reaches this address can pull through the node", "listen", ln.Addr().String())
	}

	runners := []runner{func(ctx context.Context) error { return srv.Serve(ctx, ln) }}
	if f.metricsListen != "" {
		mln, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		admin := &http.Server{Handler: srv.AdminHandler(reg), ReadHeaderTimeout: 5 * time.Second}
		runners = append(runners, httpRunner("metrics server", admin, mln, 5*time.Second))
		log.Info("metrics and health", "listen", mln.Addr().String())
	}
	upNames := make([]string, 0, len(ups))
	for _, u := range ups {
		upNames = append(upNames, u.String())
	}
	log.Info("node entry point listening", "listen", ln.Addr().String(), "proxy", proxyURL.String(), "upstreams", upNames)
	// Serve shuts down gracefully once ctx is done; runAll waits for it.
	return runAll(ctx, runners...)
}
