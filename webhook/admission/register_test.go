package admission

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// TestTheRequestLoggerWritesWhatTheDefaultOneWould checks that the request logger, which adds
// the request's values only when a line is written, writes the same lines as controller-
// runtime's DefaultLogConstructor: values, their order, names, levels and the caller.
func TestTheRequestLoggerWritesWhatTheDefaultOneWould(t *testing.T) {
	req := &admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u1", Namespace: "apps", Name: "p",
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		UserInfo: authenticationv1.UserInfo{Username: "alice"},
	}}
	newBase := func(buf *bytes.Buffer) logr.Logger {
		return logr.FromSlogHandler(slog.NewJSONHandler(buf, &slog.HandlerOptions{
			AddSource: true, Level: slog.Level(-10),
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				switch a.Key {
				case slog.TimeKey:
					return slog.Attr{}
				case slog.SourceKey:
					// The line differs between the two calls below; the file and function
					// say whether the caller was found.
					src := a.Value.Any().(*slog.Source)
					return slog.String(slog.SourceKey, filepath.Base(src.File)+" "+src.Function)
				}
				return a
			},
		}))
	}
	uses := []struct {
		name string
		use  func(logr.Logger)
	}{
		{"V(5).Info", func(l logr.Logger) { l.V(5).Info("received request", "k", 1) }},
		{"Error", func(l logr.Logger) { l.Error(errors.New("boom"), "unable to encode response") }},
		{"WithValues", func(l logr.Logger) { l.WithValues("a", "b").Info("with values") }},
		{"WithName", func(l logr.Logger) { l.WithName("sub").WithValues("a", "b").Info("with a name") }},
		{"WithCallDepth", func(l logr.Logger) { l.WithCallDepth(0).Info("with call depth") }},
		{"V(20) is not enabled", func(l logr.Logger) { l.V(20).Info("not written") }},
	}
	for _, u := range uses {
		t.Run(u.name, func(t *testing.T) {
			var want, got bytes.Buffer
			u.use(admission.DefaultLogConstructor(newBase(&want), req))
			u.use(requestLogger(newBase(&got))(logr.Discard(), req))
			if got.String() != want.String() {
				t.Errorf("request logger wrote\n%s\nDefaultLogConstructor wrote\n%s", got.String(), want.String())
			}
			if want.Len() > 0 && !strings.Contains(want.String(), "register_test.go") {
				t.Errorf("the caller is not this test: %s", want.String())
			}
		})
	}
	// Without a request, and with a discarding base, it is DefaultLogConstructor.
	var buf bytes.Buffer
	requestLogger(newBase(&buf))(logr.Discard(), nil).Info("no request")
	if !strings.Contains(buf.String(), `"msg":"no request"`) {
		t.Errorf("without a request: %s", buf.String())
	}
	requestLogger(logr.Discard())(logr.Discard(), req).Info("discarded")
}
