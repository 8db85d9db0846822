package node

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// OCI distribution error codes the node answers with itself.
const (
	codeNameInvalid     = "NAME_INVALID"
	codeNameUnknown     = "NAME_UNKNOWN"
	codeDigestInvalid   = "DIGEST_INVALID"
	codeManifestUnknown = "MANIFEST_UNKNOWN"
	codeDenied          = "DENIED"
	codeUnsupported     = "UNSUPPORTED"
	codeUnavailable     = "UNAVAILABLE"
)

// requestError is a request the node refuses before contacting anything.
type requestError struct {
	status  int
	code    string
	message string
}

func (e *requestError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message)
}

func refuse(status int, code, format string, args ...any) *requestError {
	return &requestError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// writeError writes an OCI error body. HEAD responses get the status and headers only.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	body, err := json.Marshal(map[string]any{
		"errors": []map[string]string{{"code": code, "message": message}},
	})
	if err != nil {
		// Marshalling two strings cannot fail; keep the status regardless.
		body = []byte(`{"errors":[]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
