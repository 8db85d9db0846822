# syntax=docker/dockerfile:1
# Multi-stage build: a static hubcache binary on a distroless, non-root base.
# hubcache's own image must never be pulled from Docker Hub through hubcache itself, so
# publish it to a registry the webhook leaves alone (ghcr.io by default).
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/hubcache ./cmd/hubcache

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/hubcache /usr/local/bin/hubcache
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/hubcache"]
