package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/hubcache/hubcache/proxy/server"
)

// opsFlags are the proxy's readiness and rollout flags.
type opsFlags struct {
	unreadyAfter time.Duration
	drainDelay   time.Duration
}

func addOpsFlags(fl *pflag.FlagSet, f *opsFlags) {
	fl.DurationVar(&f.unreadyAfter, "unready-after", server.DefaultUnreadyAfter,
		"how long a store may keep failing before /readyz answers 503 (shorter outages are served degraded and stay ready; 0: never)")
	fl.DurationVar(&f.drainDelay, "drain-delay", 0,
		"on SIGTERM, answer /readyz 503 and keep serving this long before closing the listener, so load balancers stop sending first (Kubernetes: 15s)")
}

func (f opsFlags) options() ([]server.Option, error) {
	if f.drainDelay < 0 {
		return nil, fmt.Errorf("--drain-delay %s: want 0 or more", f.drainDelay)
	}
	return []server.Option{server.WithUnreadyAfter(f.unreadyAfter)}, nil
}

// drainedContext returns the context the proxy's servers run under: it ends once ctx has
// ended (SIGTERM) and the proxy has drained, or when cancel is called (a server failed).
func drainedContext(ctx context.Context, srv *server.Server, d time.Duration, log *slog.Logger) (context.Context, context.CancelFunc) {
	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
			// Leave the Service before closing the listener; a second signal skips the wait.
			hard, stopHard := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			drain(hard, srv, d, log)
			stopHard()
			log.Info("shutting down")
		case <-serveCtx.Done():
		}
		cancel()
	}()
	return serveCtx, cancel
}

// drain fails readiness and keeps serving for the drain delay (or until a second signal
// cancels hard): requests already routed here, and those sent before the endpoints update
// reaches every node, are still answered.
func drain(hard context.Context, srv *server.Server, d time.Duration, log *slog.Logger) {
	if d <= 0 {
		return
	}
	srv.Drain()
	log.Info("draining: readiness fails, still serving", "drain_delay", d.String())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-hard.Done():
	}
}
