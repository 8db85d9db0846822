package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// runner serves until ctx ends, then stops gracefully and returns; an error ends the others.
type runner func(ctx context.Context) error

// runAll is the one way the commands run their servers: every runner at once, until ctx ends
// (SIGTERM) or one of them fails, which stops the rest. It returns the first failure.
func runAll(ctx context.Context, runners ...runner) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, r := range runners {
		g.Go(func() error { return r(ctx) })
	}
	return g.Wait()
}

// httpRunner serves srv on ln; when ctx ends it shuts srv down, waiting at most timeout for
// requests in flight.
func httpRunner(name string, srv *http.Server, ln net.Listener, timeout time.Duration) runner {
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("%s: %w", name, err)
		case <-ctx.Done():
		}
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		if err := srv.Shutdown(shutCtx); err != nil {
			return fmt.Errorf("%s: shutting down: %w", name, err)
		}
		<-errc
		return nil
	}
}
