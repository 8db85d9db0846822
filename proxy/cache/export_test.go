package cache

import "time"

// WithRacyWindow shortens how old a version must be to be trusted (racyWindow), so tests
// need not wait for the files they just wrote to age.
func WithRacyWindow(d time.Duration) Option {
	return func(o *options) { o.racyWindow = &d }
}
