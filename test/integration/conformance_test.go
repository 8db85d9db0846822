package integration

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hubcache/hubcache/test/testenv"
)

// The OCI distribution-spec conformance suite, read-only mode: push and the three delete
// APIs off, the content named by OCI_RO_DATA_* pre-pushed to the fake hub, so every request
// the suite makes is a pull through the proxy (cold first, then from the cache).
func TestOCIConformanceReadOnly(t *testing.T) {
	bin := testenv.Env(t, "HUBCACHE_CONFORMANCE", `hack/tools.sh conformance && eval "$(hack/tools.sh env)"`)
	e := newEnv(t)
	const repo = "conformance/readonly"
	var tags, manifests, blobs []string
	for i, kind := range imageKinds {
		tag := "v" + string(rune('1'+i))
		fx := pushFixture(t, e.hub, repo, tag, kind)
		tags = append(tags, tag)
		for _, d := range fx.manifests {
			manifests = append(manifests, d.String())
		}
		for _, d := range fx.blobs {
			blobs = append(blobs, d.String())
		}
	}

	base := []string{
		"OCI_REGISTRY=" + e.proxy.Host,
		"OCI_TLS=disabled",
		"OCI_REPO1=docker.io/" + repo,
		"OCI_REPO2=docker.io/" + repo,
		"OCI_LOG=warn",
		"OCI_API_PULL=true",
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		// Tag listing and the referrers API are not part of the proxy (pull by tag and digest only).
		"OCI_API_TAGS_LIST=false",
		"OCI_API_REFERRER=false",
		"OCI_RO_DATA_TAGS=" + strings.Join(tags, " "),
		"OCI_RO_DATA_MANIFESTS=" + strings.Join(manifests, " "),
		"OCI_RO_DATA_BLOBS=" + strings.Join(blobs, " "),
	}
	for _, tc := range []struct {
		name   string
		filter string
	}{
		{name: "the read-only tests of the pre-pushed content pass", filter: "OCI Conformance Test/read-only"},
		// The suite's other read tests, one filter each: an unfiltered run with push off
		// crashes the suite while it writes results.yaml (after printing its result).
		{name: "the ping passes", filter: "OCI Conformance Test/ping"},
		{name: "missing manifests by tag and digest are 404", filter: "OCI Conformance Test/missing-manifest"},
		{name: "an invalid digest format is refused", filter: "OCI Conformance Test/invalid-digest-format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results := t.TempDir()
			env := append(slices.Clone(base), "OCI_RESULTS_DIR="+results, "OCI_FILTER_TEST="+tc.filter)
			e.proxy.ResetSeen()
			out, err := runConformance(t, bin, results, env)
			if err != nil {
				t.Errorf("conformance suite: %v", err)
			}
			m := regexp.MustCompile(`(?m)^OCI Conformance Result: (\S+)`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("the conformance suite printed no \"OCI Conformance Result:\" line:\n%s", out)
			}
			if m[1] != "Pass" {
				t.Errorf("OCI Conformance Result: %s, want Pass:\n%s", m[1], out)
			}
			// A filter that matched nothing would also "pass": make sure requests were made.
			if e.proxy.Seen("GET", "manifests")+e.proxy.Seen("GET", "other") == 0 {
				t.Errorf("the conformance suite sent no request to the proxy:\n%s", out)
			}
			if tc.filter == "OCI Conformance Test/read-only" && e.proxy.Seen("GET", "blobs") == 0 {
				t.Errorf("the conformance suite pulled no blob through the proxy:\n%s", out)
			}
		})
	}
}

// runConformance runs the compiled suite in dir with only the OCI_ variables given, so a
// developer's own OCI_* settings or an oci-conformance.yaml cannot change what is tested.
func runConformance(t *testing.T, bin, dir string, env []string) (string, error) {
	t.Helper()
	base := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCI_") {
			base = append(base, kv)
		}
	}
	return runIn(t, dir, append(base, env...), bin, "-test.v")
}
