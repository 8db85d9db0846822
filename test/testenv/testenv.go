// Package testenv finds the real servers and tools the integration tests run against. In CI
// (CI=true) a missing one fails the test; on a developer machine it skips with the command
// that provides it.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing fails the test in CI and skips it elsewhere, saying how to get what is missing.
func Missing(t testing.TB, what, howToGet string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required in CI and is missing: %s", what, howToGet)
	}
	t.Skipf("%s is missing (%s)", what, howToGet)
}

// Env returns the value of an environment variable naming a tool, or calls Missing.
func Env(t testing.TB, name, howToGet string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Missing(t, name, howToGet)
	}
	if _, err := os.Stat(v); err != nil {
		Missing(t, name+"="+v, howToGet)
	}
	return v
}

// Binary returns the path of a program on PATH, or calls Missing.
func Binary(t testing.TB, name, howToGet string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, howToGet)
	}
	return p
}

// Root skips (or fails in CI) unless the test runs as root, which containerd needs.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root", "run the tests as root (sudo make test)")
	}
}
