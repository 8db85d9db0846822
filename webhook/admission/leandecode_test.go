package admission

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// leanSeeds are Pods as the API server writes them (which leanDecode must read itself) and
// JSON it must leave to encoding/json, or reject.
func leanSeeds(t testing.TB) [][]byte {
	pods := []*corev1.Pod{
		realisticPod(),
		newPod(nil, manyContainers(3), nil),
		newPod(map[string]string{"hubcache.io/original-images": `{"a":"busybox"}`, "x": "<&>\u2028é"},
			[]corev1.Container{{Name: "ä", Image: "nginx:1.27"}}, []corev1.Container{{Name: "i", Image: "team/app@sha256:" + strings.Repeat("ab", 32)}}),
		{Spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}, {}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}}},
		{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}},
	}
	var seeds [][]byte
	for _, p := range pods {
		seeds = append(seeds, raw(t, p))
	}
	for _, s := range []string{
		`{}`, `[]`, `"Pod"`, `null`, `{"kind":"Pod"}`, `{"kind":"Deployment"}`, ` {"kind" : "Pod" } `,
		`{"kind":null}`, `{"kind":5}`, `{"Kind":"Pod"}`, `{"KIND":"Pod","kind":"Pod"}`, `{"kind":"Pod","kind":"Pod"}`,
		`{"\u006bind":"Pod"}`, `{"\u212aind":"Pod"}`, `{"metadata":null}`, `{"metadata":{}}`, `{"metadata":[]}`,
		`{"metadata":{"annotations":null}}`, `{"metadata":{"annotations":{}}}`, `{"metadata":{"annotations":{"a":"1","a":"2"}}}`,
		`{"metadata":{"annotations":{"a":null}}}`, `{"metadata":{"annotations":{"a":1}}}`, `{"metadata":{"annotations":{"\u0061":"\u00e9\ud83d\ude00"}}}`,
		`{"metadata":{"annotations":{"a":"\ud800"}}}`, "{\"metadata\":{\"annotations\":{\"a\":\"\xff\"}}}", `{"metadata":{"Annotations":{}}}`,
		`{"spec":null}`, `{"spec":{}}`, `{"spec":{"containers":null}}`, `{"spec":{"containers":[]}}`, `{"spec":{"containers":[null]}}`,
		`{"spec":{"containers":[{"name":"a","image":"x"},{"image":"y"}]}}`, `{"spec":{"containers":[{"name":"a","name":"b"}]}}`,
		`{"spec":{"containers":[{"name":"a","Image":"x"}]}}`, `{"spec":{"containers":[{"image":5}]}}`, `{"spec":{"containers":{}}}`,
		`{"spec":{"containers":[{"name":"a","image":"x"}],"containers":[{"name":"b"}]}}`, `{"spec":{"imagePullSecrets":[]}}`,
		`{"spec":{"imagePullSecrets":[{}]}}`, `{"spec":{"imagePullSecrets":[{"name":"s","other":1}]}}`, `{"spec":{"imagePullSecrets":[null]}}`,
		`{"spec":{"initContainers":[{"name":"i","image":"busybox","x":[1,2,{"y":[true,false,null]}]}]}}`,
		`{"spec":{"ephemeralContainers":[{"name":"e","image":"busybox","targetContainerName":"a"}]}}`,
		`{"x":-0.5e+10,"y":[0,-1,1.5,2E3,1e-2]}`, `{"x":01}`, `{"x":1.}`, `{"x":.5}`, `{"x":-}`, `{"x":1e}`, `{"x":tru}`, `{"x":truex}`,
		`{"x":"\q"}`, `{"x":"\u12"}`, "{\"x\":\"a\tb\"}", `{"x":1,}`, `{,}`, `{"x" 1}`, `{"x":1}{}`, `{"x":1} x`, `{"x":[1 2]}`, `{"x":[1,]}`,
		`{"x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, `{"spec":{"containers":[{"name":"a\"b","image":"a\/b"}]}}`,
		`{"a":{"b":"k:{\"name\":\"web\"}"}}`, `{"kind":"Pod"`, `{"kind":"Po`, ``, `{"spec":{"containers":[{"name":"a","image":"x"}]},"spec":{}}`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// checkLeanDecode checks, for one input, that decodePod (which reads with leanDecode when it
// can) gives what encoding/json's decode of the podView gives, and that both agree with a
// full corev1.Pod decode on every field the webhook reads.
func checkLeanDecode(t *testing.T, b []byte) {
	lean, ok := leanDecode(b)
	want, wantErr := decodePodJSON(b)
	if ok && (wantErr != nil || !reflect.DeepEqual(lean, want)) {
		t.Fatalf("%q: leanDecode read %+v, encoding/json %+v (%v)", b, lean, want, wantErr)
	}
	// decodePod trims the input, refuses no object and an object of another kind, and is
	// otherwise what encoding/json reads, errors included.
	got, err := decodePod(b)
	trimmed := bytes.TrimSpace(b)
	want, wantErr = decodePodJSON(trimmed)
	switch {
	case len(trimmed) == 0 || string(trimmed) == "null":
		if err == nil {
			t.Fatalf("%q: decodePod read no object without an error", b)
		}
	case wantErr != nil:
		if err == nil || err.Error() != wantErr.Error() {
			t.Fatalf("%q: decodePod: %v; encoding/json: %v", b, err, wantErr)
		}
	case want.Kind != "" && want.Kind != "Pod":
		if err == nil {
			t.Fatalf("%q: decodePod read a %s without an error", b, want.Kind)
		}
	case err != nil || !reflect.DeepEqual(got, want):
		t.Fatalf("%q: decodePod read %+v (%v), encoding/json %+v", b, got, err, want)
	}
	var full corev1.Pod
	if err != nil || json.Unmarshal(b, &full) != nil {
		return
	}
	if got.Kind != full.Kind {
		t.Fatalf("%q: kind %q, full decode %q", b, got.Kind, full.Kind)
	}
	if !reflect.DeepEqual(got.annotations(), full.Annotations) {
		t.Fatalf("%q: annotations %v, full decode %v", b, got.annotations(), full.Annotations)
	}
	if !reflect.DeepEqual(got.spec.ImagePullSecrets, full.Spec.ImagePullSecrets) {
		t.Fatalf("%q: pull secrets %v, full decode %v", b, got.spec.ImagePullSecrets, full.Spec.ImagePullSecrets)
	}
	type nameImage struct{ name, image string }
	list := func(cs []corev1.Container) []nameImage {
		var out []nameImage
		for _, c := range cs {
			out = append(out, nameImage{c.Name, c.Image})
		}
		return out
	}
	ephemeral := func(cs []corev1.EphemeralContainer) []nameImage {
		var out []nameImage
		for _, c := range cs {
			out = append(out, nameImage{c.Name, c.Image})
		}
		return out
	}
	for _, l := range []struct {
		name      string
		got, full []nameImage
	}{
		{"containers", list(got.spec.Containers), list(full.Spec.Containers)},
		{"initContainers", list(got.spec.InitContainers), list(full.Spec.InitContainers)},
		{"ephemeralContainers", ephemeral(got.spec.EphemeralContainers), ephemeral(full.Spec.EphemeralContainers)},
	} {
		if !reflect.DeepEqual(l.got, l.full) {
			t.Fatalf("%q: %s %v, full decode %v", b, l.name, l.got, l.full)
		}
	}
}

func TestLeanDecodeAgreesWithEncodingJSON(t *testing.T) {
	for _, b := range leanSeeds(t) {
		checkLeanDecode(t, b)
	}
}

// TestLeanDecodeReadsWhatTheAPIServerSends makes sure the fast path is the one taken for a
// Pod as the API server writes it (the benchmarks would otherwise measure the other).
func TestLeanDecodeReadsWhatTheAPIServerSends(t *testing.T) {
	for i, b := range leanSeeds(t)[:5] {
		if _, ok := leanDecode(b); !ok {
			t.Errorf("seed %d: leanDecode left %.200s to encoding/json", i, b)
		}
	}
}

func FuzzLeanDecode(f *testing.F) {
	for _, b := range leanSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(checkLeanDecode)
}
