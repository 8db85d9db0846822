package manifests

import (
	"os"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTheImageTheManifestsNameIsTheOneMakeImageBuilds(t *testing.T) {
	objs, err := Objects("quickstart")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := find(objs, named[*appsv1.Deployment]("hubcache-proxy"))
	image := d.Spec.Template.Spec.Containers[0].Image
	repo, tag, ok := strings.Cut(image, ":")
	if !ok || repo != "ghcr.io/hubcache/hubcache" {
		t.Fatalf("manifests name %q", image)
	}
	mk := readRepoFile(t, "Makefile")
	// make image tags $(IMAGE):$(IMAGE_TAG), IMAGE_TAG read from the kustomization's newTag.
	for _, want := range []string{
		"IMAGE     ?= " + repo,
		`IMAGE_TAG ?= $(shell sed -n 's/^ *newTag: *//p' manifests/base/kustomization.yaml)`,
		"-t $(IMAGE):$(IMAGE_TAG)",
		"-X main.commit=$(COMMIT) -X main.date=$(DATE)",
	} {
		if !strings.Contains(mk, want) {
			t.Errorf("Makefile lacks %q", want)
		}
	}
	if !strings.Contains(readRepoFile(t, "CHANGELOG.md"), "## ["+strings.TrimPrefix(tag, "v")+"]") {
		t.Errorf("CHANGELOG.md has no section for the manifests' tag %s", tag)
	}
}

func TestTheDockerfileBuildsEveryArchitectureFromPinnedBases(t *testing.T) {
	df := readRepoFile(t, "Dockerfile")
	for _, want := range []string{"--platform=$BUILDPLATFORM", "GOARCH=${TARGETARCH}", "-X main.commit=${COMMIT}",
		"org.opencontainers.image.source", "org.opencontainers.image.revision", "org.opencontainers.image.licenses=\"Apache-2.0\""} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	pinned := regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	for _, line := range strings.Split(df, "\n") {
		if v, ok := strings.CutPrefix(line, "ARG "); ok && strings.Contains(v, "_IMAGE=") {
			if !pinned.MatchString(v) {
				t.Errorf("base image not pinned by digest: %s", line)
			}
		}
	}
	if !strings.Contains(readRepoFile(t, "LICENSE"), "Apache License\n                           Version 2.0, January 2004") {
		t.Error("LICENSE is not the Apache License 2.0")
	}
}
