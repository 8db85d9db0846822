# syntax=docker/dockerfile:1
# Multi-stage, multi-architecture build: a static hubcache binary on a distroless, non-root
# base. The build stage runs on the builder's own platform (BUILDPLATFORM) and cross-compiles
# for the target (TARGETOS/TARGETARCH), so linux/amd64 and linux/arm64 build without emulation:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/hubcache/hubcache:TAG .
#
# hubcache's own image must never be pulled from Docker Hub through hubcache itself, so
# publish it to a registry the webhook leaves alone (ghcr.io by default).
#
# Base images are pinned by digest (the tag is kept for readers). Refresh them with
#   crane digest golang:1.26-bookworm; crane digest gcr.io/distroless/static-debian12:nonroot
# The Go toolchain itself is pinned by GOTOOLCHAIN (verified against the Go checksum database),
# so the compiler is the go.mod version whatever Go the builder image carries.
ARG BUILDER_IMAGE=golang:1.26-bookworm@sha256:b305420a68d0f229d91eb3b3ed9e519fcf2cf5461da4bef997bf927e8c0bfd2b
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639

FROM --platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS build
ARG GO_TOOLCHAIN=go1.26.8
ENV GOTOOLCHAIN=${GO_TOOLCHAIN}
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/hubcache ./cmd/hubcache

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
LABEL org.opencontainers.image.title="hubcache" \
      org.opencontainers.image.description="Docker Hub pull-through cache and image-rewriting admission webhook for Kubernetes" \
      org.opencontainers.image.source="https://github.com/hubcache/hubcache" \
      org.opencontainers.image.url="https://github.com/hubcache/hubcache" \
      org.opencontainers.image.documentation="https://github.com/hubcache/hubcache/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${DATE}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/hubcache /usr/local/bin/hubcache
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/hubcache"]
