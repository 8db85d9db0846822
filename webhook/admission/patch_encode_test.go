package admission

import (
	"bytes"
	"encoding/json"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
)

func TestThePatchIsEncodedAsJSONPatchOperationsMarshal(t *testing.T) {
	ops := []jsonpatch.Operation{
		{Operation: "replace", Path: "/spec/containers/0/image", Value: "127.0.0.1:5000/docker.io/library/nginx:1.27"},
		{Operation: "replace", Path: "/spec/initContainers/12/image", Value: `we"ird\<img>&` + "\u2028\x01é"},
		{Operation: "add", Path: "/metadata/annotations/hubcache.io~1original-images", Value: `{"a":"nginx:1.27"}`},
		{Operation: "add", Path: "/metadata/annotations", Value: map[string]string{"hubcache.io/original-images": `{"a":"b"}`}},
		{Operation: "add", Path: "/metadata", Value: map[string]any{"annotations": map[string]string{"k": "v"}}},
		{Operation: "replace", Path: "/x"},
		{Operation: "remove", Path: "/y"},
	}
	want, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	got, err := encodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded\n%s\nwant\n%s", got, want)
	}
}
