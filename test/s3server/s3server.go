// Package s3server starts a real S3 server for a test: MinIO, or versitygw (a second, stricter
// implementation) with its posix backend. Each server listens on 127.0.0.1 on a free port,
// keeps its data in the test's temporary directory, has one empty bucket, and stops when the
// test ends. The binaries come from hack/tools.sh (HUBCACHE_MINIO, HUBCACHE_VERSITYGW).
package s3server

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/hubcache/hubcache/test/testenv"
)

const (
	accessKey = "hubcache-test"
	secretKey = "hubcache-test-secret"
	region    = "us-east-1"
	bucket    = "hubcache-test"
	// startTimeout is generous: the machines running the tests are often busy.
	startTimeout = 90 * time.Second
	stopTimeout  = 15 * time.Second
)

// Kind names an S3 implementation.
type Kind string

const (
	MinIO     Kind = "minio"
	Versitygw Kind = "versitygw"
)

// Kinds lists every implementation, for tests that run against all of them.
func Kinds() []Kind { return []Kind{MinIO, Versitygw} }

// Server is one running S3 server with one bucket.
type Server struct {
	Kind      Kind
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Region    string
	Bucket    string
	// Dir holds the server's data.
	Dir string

	binary  string
	addr    string
	console string // MinIO's console address (it insists on one)
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a server of kind, creates its bucket and stops it when the test ends. In CI a
// missing binary fails the test; elsewhere the test is skipped with the command that builds it.
func Start(t testing.TB, kind Kind) *Server {
	t.Helper()
	var binary string
	switch kind {
	case MinIO:
		binary = testenv.Env(t, "HUBCACHE_MINIO", `hack/tools.sh minio && eval "$(hack/tools.sh env)"`)
	case Versitygw:
		binary = testenv.Env(t, "HUBCACHE_VERSITYGW", `hack/tools.sh versitygw && eval "$(hack/tools.sh env)"`)
	default:
		t.Fatalf("s3server: unknown kind %q", kind)
	}
	dir := t.TempDir()
	s := &Server{
		Kind:      kind,
		AccessKey: accessKey,
		SecretKey: secretKey,
		Region:    region,
		Bucket:    bucket,
		Dir:       filepath.Join(dir, "data"),
		binary:    binary,
		logPath:   filepath.Join(dir, string(kind)+".log"),
	}
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		t.Fatalf("s3server: %v", err)
	}
	// A port found free may be taken before the server binds it; try a few.
	var err error
	for range 3 {
		s.addr, s.console = freePort(t), freePort(t)
		s.Endpoint = "http://" + s.addr
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("s3server: starting %s: %v\n%s", kind, err, s.logTail())
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("s3server: stopping %s: %v", kind, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.waitReady(ctx); err != nil {
		t.Fatalf("s3server: %s at %s did not become ready: %v\n%s", kind, s.Endpoint, err, s.logTail())
	}
	return s
}

// URL returns the --blob-store URL (contract) for prefix in the server's bucket.
func (s *Server) URL(prefix string) string {
	u := url.URL{Scheme: "s3", Host: s.Bucket, Path: "/" + strings.Trim(prefix, "/")}
	q := url.Values{"endpoint": {s.Endpoint}, "region": {s.Region}, "path-style": {"true"}}
	u.RawQuery = q.Encode()
	return u.String()
}

// Env returns the AWS_* environment that lets a child process (the hubcache binary) use the
// server through the standard credential chain.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region,
	}
}

// Client returns an S3 client for inspecting the bucket directly.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:                     s.Region,
		BaseEndpoint:               aws.String(s.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// Stop stops the server and keeps its data (tests of "S3 down"); stopping twice is fine.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
	}
	return nil
}

// Restart starts a stopped server again on the same address with the same data, and waits
// until it answers.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.start(); err != nil {
		return err
	}
	return s.waitReady(ctx)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	var cmd *exec.Cmd
	switch s.Kind {
	case MinIO:
		cmd = exec.Command(s.binary, "server", s.Dir, "--address", s.addr, "--console-address", s.console, "--quiet")
		cmd.Env = append(os.Environ(),
			"MINIO_ROOT_USER="+s.AccessKey,
			"MINIO_ROOT_PASSWORD="+s.SecretKey,
			"MINIO_BROWSER=off",
			"MINIO_UPDATE=off",
			// Test directories live on the root disk, which MinIO otherwise refuses or warns about.
			"MINIO_CI_CD=on",
		)
	case Versitygw:
		cmd = exec.Command(s.binary,
			"--access", s.AccessKey, "--secret", s.SecretKey,
			"--port", s.addr, "--region", s.Region, "--quiet",
			"posix", s.Dir)
		cmd.Env = os.Environ()
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("exec %s: %w", s.binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	// Exiting within a moment means the address was taken or the flags are wrong.
	select {
	case <-done:
		return fmt.Errorf("%s exited at once", s.Kind)
	case <-time.After(300 * time.Millisecond):
	}
	s.cmd, s.done = cmd, done
	return nil
}

// waitReady creates the bucket, retrying until the server answers; an existing bucket (after
// Restart) counts as ready.
func (s *Server) waitReady(ctx context.Context) error {
	client := s.Client()
	for {
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		if done == nil {
			return errors.New("server is not running")
		}
		_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)})
		if err == nil || strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") || strings.Contains(err.Error(), "BucketAlreadyExists") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create bucket %s: %w", s.Bucket, err)
		case <-done:
			return fmt.Errorf("%s exited: last error %w", s.Kind, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return fmt.Sprintf("--- %s log (tail) ---\n%s", s.Kind, b)
}

func freePort(t testing.TB) string {
	t.Helper()
	return testenv.FreeAddr(t)
}
