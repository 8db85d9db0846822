package admission

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// manyContainers returns n containers with Docker Hub images, all of which get rewritten.
func manyContainers(n int) []corev1.Container {
	cs := make([]corev1.Container, n)
	for i := range cs {
		cs[i] = corev1.Container{Name: fmt.Sprintf("c%05d", i), Image: fmt.Sprintf("team/app%d:1.%d", i%7, i%13)}
	}
	return cs
}

func review(t testing.TB, pod *corev1.Pod) []byte {
	t.Helper()
	podRaw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "big", Kind: podKind, Operation: admissionv1.Create, Namespace: "apps",
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Object:   runtime.RawExtension{Raw: podRaw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func serveWith(t *testing.T, limits Limits) *httptest.Server {
	t.Helper()
	hooks, err := Webhooks(rewrite.Policy{}, WithLimits(limits))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hooks[PathMutate])
	t.Cleanup(srv.Close)
	return srv
}

func TestABodyOverTheLimitIsRefusedAndTheServerKeepsServing(t *testing.T) {
	limits := DefaultLimits()
	limits.MaxRequestBytes = 64 << 10
	srv := serveWith(t, limits)
	pod := newPod(nil, manyContainers(3000), nil) // about 150 KiB
	status, resp := post(t, srv.URL, "application/json", bytes.NewReader(review(t, pod)))
	if status == http.StatusOK && resp != nil && resp.Allowed && len(resp.Patch) > 0 {
		t.Fatalf("a review over the limit was patched")
	}
	status, resp = post(t, srv.URL, "application/json", bytes.NewReader(goodReview(t)))
	if status != http.StatusOK || resp == nil || len(resp.Patch) == 0 {
		t.Fatalf("after a body over the limit a good review got HTTP %d %+v", status, resp)
	}
}

func TestTheDefaultBodyLimitHoldsTheLargestPodTwice(t *testing.T) {
	// An ephemeralcontainers UPDATE carries object and oldObject, each up to etcd's 1.5 MiB.
	if got, want := DefaultLimits().MaxRequestBytes, int64(3<<20); got < want {
		t.Fatalf("MaxRequestBytes = %d, want at least %d", got, want)
	}
}

// trickle writes one byte every interval until stop is closed.
func trickle(w *io.PipeWriter, interval time.Duration, stop <-chan struct{}) {
	defer w.Close()
	for {
		if _, err := w.Write([]byte("{")); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(interval):
		}
	}
}

func TestABodyTricklingOneByteEveryFiveSecondsIsCut(t *testing.T) {
	limits := DefaultLimits()
	limits.ReadTimeout = 200 * time.Millisecond
	srv := serveWith(t, limits)
	pr, pw := io.Pipe()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { trickle(pw, 5*time.Second, stop); close(done) }()
	t.Cleanup(func() { close(stop); _ = pr.Close(); <-done })

	req, err := http.NewRequest(http.MethodPost, srv.URL, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // the server closed the connection: cut
	}
	defer resp.Body.Close()
	var r admissionv1.AdmissionReview
	if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&r) == nil && r.Response != nil && r.Response.Allowed {
		t.Fatalf("a trickled body was answered as a good review: %+v", r.Response)
	}
}

func TestARequestPastItsDeadlineIsAdmittedUnchangedWithAWarning(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := createRequest(t, newPod(nil, []corev1.Container{{Name: "app", Image: "nginx"}}, nil))
	resp := handler(t, ModeEnabled).Handle(ctx, req)
	if !resp.Allowed || len(resp.Patches) != 0 || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "deadline") {
		t.Fatalf("allowed=%v patches=%v warnings=%q, want unchanged with a deadline warning", resp.Allowed, resp.Patches, resp.Warnings)
	}
}

func TestTheRequestDeadlineReachesTheHandler(t *testing.T) {
	var got time.Time
	inner := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got, _ = r.Context().Deadline() })
	limits := DefaultLimits()
	before := time.Now()
	bounded(inner, limits).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", http.NoBody))
	if got.IsZero() || got.Before(before) || got.After(time.Now().Add(limits.RequestTimeout)) {
		t.Fatalf("deadline %v, want within %s of the request", got, limits.RequestTimeout)
	}
}

func TestWarningsAreCapped(t *testing.T) {
	limits := DefaultLimits()
	limits.MaxWarnings = 5
	req := createRequest(t, newPod(nil, manyContainers(30), nil))
	resp := handler(t, ModeDryRun, WithLimits(limits)).Handle(context.Background(), req)
	if len(resp.Warnings) != 5 {
		t.Fatalf("%d warnings, want 5", len(resp.Warnings))
	}
	if last := resp.Warnings[4]; !strings.Contains(last, "26 more") {
		t.Errorf("last warning %q, want it to say 26 more", last)
	}
}

func TestLoggedAndAuditedDecisionsAreCappedButCounted(t *testing.T) {
	limits := DefaultLimits()
	limits.MaxListedDecisions = 3
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	req := createRequest(t, newPod(nil, manyContainers(30), nil))
	resp := handler(t, ModeEnabled, WithLimits(limits), WithLogger(log)).Handle(context.Background(), req)
	if len(resp.Patches) != 31 {
		t.Fatalf("%d patch operations, want 30 images and 1 annotation", len(resp.Patches))
	}
	var line struct {
		Changes     []rewrite.Decision `json:"changes"`
		ChangeCount int                `json:"changeCount"`
	}
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log %s: %v", logs.String(), err)
	}
	if len(line.Changes) != 3 || line.ChangeCount != 30 {
		t.Errorf("log lists %d changes with count %d, want 3 and 30", len(line.Changes), line.ChangeCount)
	}
	var audit []map[string]any
	if err := json.Unmarshal([]byte(resp.AuditAnnotations[auditRewritten]), &audit); err != nil {
		t.Fatal(err)
	}
	if len(audit) != 4 || audit[3]["omitted"] != float64(27) {
		t.Errorf("audit annotation %v, want 3 decisions and omitted 27", audit)
	}
}

func TestARewriteWhoseAnnotationWouldNotFitIsNotMade(t *testing.T) {
	limits := DefaultLimits()
	limits.MaxAnnotationBytes = 200
	req := createRequest(t, newPod(nil, manyContainers(30), nil))
	resp := handler(t, ModeEnabled, WithLimits(limits)).Handle(context.Background(), req)
	if !resp.Allowed || len(resp.Patches) != 0 || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "annotation size limit") {
		t.Fatalf("allowed=%v patches=%d warnings=%q, want unchanged with a warning", resp.Allowed, len(resp.Patches), resp.Warnings)
	}
}

func TestPatchOperationsAddressOnlyTheChangedImages(t *testing.T) {
	pod := newPod(map[string]string{"team": "a"},
		[]corev1.Container{{Name: "a", Image: "quay.io/x/y"}, {Name: "b", Image: "nginx"}},
		[]corev1.Container{{Name: "i", Image: "busybox"}})
	resp := handler(t, ModeEnabled).Handle(context.Background(), createRequest(t, pod))
	var paths []string
	for _, op := range resp.Patches {
		paths = append(paths, op.Operation+" "+op.Path)
	}
	want := []string{
		"replace /spec/containers/1/image",
		"replace /spec/initContainers/0/image",
		"add /metadata/annotations/hubcache.io~1original-images",
	}
	if strings.Join(paths, ",") != strings.Join(want, ",") {
		t.Fatalf("operations %q, want %q", paths, want)
	}
}

func TestLimitsMustBePositive(t *testing.T) {
	l := DefaultLimits()
	l.RequestTimeout = 0
	if _, err := NewHandler(ModeEnabled, rewrite.Policy{}, WithLimits(l)); err == nil {
		t.Fatal("a zero request timeout was accepted")
	}
}

func TestTLSAcceptsOnlyAEADSuitesOnTLS12AndTLS13(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{}
	ConfigureTLS(srv.TLS)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	dial := func(c *tls.Config) error {
		c.RootCAs = roots
		conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), c)
		if err == nil {
			conn.Close()
		}
		return err
	}
	tests := []struct {
		name   string
		config *tls.Config
		ok     bool
	}{
		{"TLS 1.3 is accepted", &tls.Config{MinVersion: tls.VersionTLS13}, true},
		{"TLS 1.2 with ECDHE AES-GCM is accepted", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true},
		{"TLS 1.2 with CBC-SHA1 is refused", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
				tls.TLS_RSA_WITH_AES_128_CBC_SHA}}, false},
		{"TLS 1.2 with static RSA GCM is refused", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}, false},
		{"TLS 1.1 is refused", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := dial(tt.config)
			if (err == nil) != tt.ok {
				t.Fatalf("handshake error %v, want success=%v", err, tt.ok)
			}
		})
	}
}
