package admission

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// serve starts both webhooks on a local test server, as the webhook server mounts them.
func serve(t *testing.T) *httptest.Server {
	t.Helper()
	hooks, err := Webhooks(rewrite.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for path, h := range hooks {
		mux.Handle(path, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// post sends body and returns the HTTP status and the AdmissionReview response, if any.
func post(t *testing.T, url, contentType string, body io.Reader) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the server stopped serving: %v", err)
	}
	defer resp.Body.Close()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, review.Response
}

func goodReview(t *testing.T) []byte {
	t.Helper()
	pod := newPod(nil, []corev1.Container{{Name: "app", Image: "nginx:1.27"}}, nil)
	return raw(t, admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "good", Kind: podKind, Operation: admissionv1.Create,
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Object:   runtime.RawExtension{Raw: raw(t, pod)},
		},
	})
}

func TestMalformedAdmissionReviewsGetAnErrorAndTheServerKeepsServing(t *testing.T) {
	srv := serve(t)
	huge := bytes.Repeat([]byte("a"), 8<<20)
	tests := []struct {
		name        string
		contentType string
		body        io.Reader
		wantAllowed bool
	}{
		{name: "an empty body", contentType: "application/json", body: http.NoBody},
		{name: "a body that is not JSON", contentType: "application/json", body: strings.NewReader("<xml/>")},
		{name: "truncated JSON", contentType: "application/json", body: strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":`)},
		{name: "a JSON array", contentType: "application/json", body: strings.NewReader(`[1,2,3]`)},
		{name: "the wrong content type", contentType: "text/plain", body: bytes.NewReader(goodReview(t))},
		{name: "no content type", body: bytes.NewReader(goodReview(t))},
		{name: "a body over the size limit", contentType: "application/json", body: bytes.NewReader(huge)},
		{name: "a request whose object is garbage is admitted unchanged", contentType: "application/json", wantAllowed: true,
			body: strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":"nope"}}}}`)},
		{name: "a review with no request", contentType: "application/json", wantAllowed: true,
			body: strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`)},
		{name: "a review for a ConfigMap", contentType: "application/json", wantAllowed: true,
			body: strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"ConfigMap"},"operation":"CREATE","object":{"kind":"ConfigMap","data":{"a":"b"}}}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{PathMutate, PathDryRun} {
				status, resp := post(t, srv.URL+path, tt.contentType, tt.body)
				if seeker, ok := tt.body.(io.Seeker); ok {
					_, _ = seeker.Seek(0, io.SeekStart)
				}
				switch {
				case status >= 400 && status < 500:
					// A plain 4xx is an acceptable answer to a malformed body.
				case status != http.StatusOK || resp == nil:
					t.Fatalf("%s: HTTP %d with no AdmissionReview response", path, status)
				case tt.wantAllowed:
					if !resp.Allowed || resp.Patch != nil {
						t.Errorf("%s: allowed=%v patch=%s, want allowed and unchanged", path, resp.Allowed, resp.Patch)
					}
				default:
					if resp.Allowed || resp.Result == nil || resp.Result.Code < 400 || resp.Result.Code >= 500 {
						t.Errorf("%s: allowed=%v result=%+v, want an error response with a 4xx code", path, resp.Allowed, resp.Result)
					}
				}
			}
			// The server still answers a good review correctly.
			status, resp := post(t, srv.URL+PathMutate, "application/json", bytes.NewReader(goodReview(t)))
			if status != http.StatusOK || resp == nil || !resp.Allowed || resp.UID != "good" || len(resp.Patch) == 0 {
				t.Fatalf("after %s the server answered a good review with HTTP %d %+v", tt.name, status, resp)
			}
		})
	}
}

func TestAGoodReviewOverHTTPGetsAJSONPatch(t *testing.T) {
	srv := serve(t)
	status, resp := post(t, srv.URL+PathMutate, "application/json", bytes.NewReader(goodReview(t)))
	if status != http.StatusOK || resp == nil {
		t.Fatalf("HTTP %d", status)
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patchType = %v, want JSONPatch", resp.PatchType)
	}
	for _, want := range []string{`"/spec/containers/0/image"`, `127.0.0.1:5000/docker.io/library/nginx:1.27`, `hubcache.io/original-images`} {
		if !strings.Contains(string(resp.Patch), want) {
			t.Errorf("patch %s lacks %s", resp.Patch, want)
		}
	}
	status, resp = post(t, srv.URL+PathDryRun, "application/json", bytes.NewReader(goodReview(t)))
	if status != http.StatusOK || resp == nil || !resp.Allowed || resp.Patch != nil || len(resp.Warnings) != 1 {
		t.Fatalf("dry-run over HTTP: HTTP %d %+v", status, resp)
	}
}
