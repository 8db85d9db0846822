# hubcache — the front door. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's date, not the clock: the same commit builds the same binary.
DATE      ?= $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
# The image `make image` builds is the one the manifests name: the tag comes from
# manifests/base/kustomization.yaml (images: newTag), so the two cannot drift apart.
IMAGE     ?= ghcr.io/hubcache/hubcache
IMAGE_TAG ?= $(shell sed -n 's/^ *newTag: *//p' manifests/base/kustomization.yaml)
PLATFORMS ?= linux/amd64,linux/arm64
# Slow-to-build test tools (kube-apiserver, etcd, kubectl, the kubelet, crane, the OCI conformance suite)
# are cached here, keyed by version, outside the clone so a fresh clone reuses them.
export TOOLS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hubcache-tools
TEST_TIMEOUT ?= 60m
FUZZTIME  ?= 20s
# BENCH selects benchmarks by name for make bench (a go test -bench pattern).
BENCH     ?= .
# BENCH_RESULTS keeps the rows of make bench in a folder, so a run of some benchmarks can
# replace their rows and keep the others (make bench BENCH=WarmBlob BENCH_RESULTS=DIR).
BENCH_RESULTS ?=
RUN_DATA  ?= $(CURDIR)/data

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/hubcache (static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/hubcache ./cmd/hubcache

.PHONY: run
run: build ## Run the cache on 127.0.0.1:5000 with embedded defaults (files + SQLite in ./data)
	bin/hubcache proxy --listen 127.0.0.1:5000 --data-dir $(RUN_DATA)

.PHONY: tools
tools: ## Install or build what the tests need (apt packages, kube-apiserver, etcd, kubectl, kubelet, crane, conformance, MinIO, versitygw)
	hack/tools.sh all

.PHONY: services
services: ## Start the servers the tests talk to (Postgres)
	hack/services.sh

.PHONY: test
test: tools services ## Run every test (unit, integration, end-to-end, brief fuzzing) against real servers, with the race detector
	eval "$$(hack/tools.sh env)"; \
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) fuzz

.PHONY: e2e
e2e: tools services ## Run only the system test: the whole chain with a real kubelet (root; part of make test)
	eval "$$(hack/tools.sh env)"; \
	$(GO) test -count=1 -v -timeout 20m ./test/e2e/system/

.PHONY: test-unit
test-unit: ## Run only the fast tests (no servers needed), with the race detector
	$(GO) test -race -short ./cmd/... ./webhook/... ./proxy/... ./manifests/...

.PHONY: fuzz
fuzz: ## Fuzz reference normalisation briefly (FUZZTIME=20s)
	$(GO) test ./webhook/rewrite -run '^$$' -fuzz '^FuzzImage$$' -fuzztime $(FUZZTIME)

.PHONY: bench
bench: tools services ## Benchmarks (not part of make test): ratios against peers and the physical limit, measured side by side; writes the table in docs/bench.md
	hack/tools.sh distribution
	results="$(BENCH_RESULTS)"; if [ -z "$$results" ]; then results="$$(mktemp -d)"; trap 'rm -rf "$$results"' EXIT; fi; \
	mkdir -p "$$results"; \
	eval "$$(hack/tools.sh env)"; \
	status=0; HUBCACHE_BENCH_RESULTS="$$results" $(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -p 1 -timeout 60m ./test/bench/... ./webhook/admission/ || status=$$?; \
	$(GO) run ./test/bench/cmd/benchtable -results "$$results" -doc docs/bench.md; \
	exit $$status

.PHONY: vet
vet: ## go vet every package
	$(GO) vet ./...

OVERLAY ?= quickstart
.PHONY: manifests
manifests: ## Render the kustomize manifests to stdout (OVERLAY=quickstart|production)
	@kubectl kustomize manifests/$(OVERLAY) 2>/dev/null || $(GO) run sigs.k8s.io/kustomize/kustomize/v5@v5.8.0 build manifests/$(OVERLAY)

IMAGE_ARGS = --build-arg VERSION=$(IMAGE_TAG) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -t $(IMAGE):$(IMAGE_TAG)

.PHONY: image
image: ## Build ghcr.io/hubcache/hubcache:<the manifests' tag> for this platform and load it (Docker + buildx)
	docker buildx build --load $(IMAGE_ARGS) .

.PHONY: image-push
image-push: ## Build and push the multi-architecture image (PLATFORMS=linux/amd64,linux/arm64)
	docker buildx build --platform $(PLATFORMS) --push $(IMAGE_ARGS) .

.PHONY: clean
clean: ## Remove build output (not the tool cache)
	rm -rf bin dist
