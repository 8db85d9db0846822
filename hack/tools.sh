#!/usr/bin/env bash
# Builds or installs the real servers and clients the tests run against, caching each
# slow-to-build binary in $TOOLS_DIR keyed by version so only a fresh machine pays for it.
# Usage: hack/tools.sh [apt|kube-apiserver|kubectl|kubelet|etcd|envtest|crane|conformance|minio|versitygw|distribution|env|all]   (prints nothing on a cache hit)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
CONFORMANCE_VERSION="${CONFORMANCE_VERSION:-v0.0.0-20260831232431-97274622c111}"
# MinIO tags no Go-module releases; this is what @latest resolved to on 2026-02-12 (pinned so
# every machine tests against the same server).
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
DISTRIBUTION_VERSION="${DISTRIBUTION_VERSION:-v3.1.2}"
TOOLS_DIR="${TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hubcache-tools}"

log() { echo "tools: $*" >&2; }
die() { echo "tools: ERROR: $*" >&2; exit 1; }

# apt installs the Debian packages the tests drive (containerd, skopeo) when missing.
apt_pkgs() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v psql >/dev/null || missing+=(postgresql)
  if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
  log "apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# kube_build builds one command of k8s.io/kubernetes (kube-apiserver, kubectl, kubelet) from
# the Go module proxy: a throwaway module requires k8s.io/kubernetes and points every staging
# module at its release. Every command gets the same go.mod, so the second and third builds
# reuse the downloaded modules and the compiled packages (the kubelet: about 2 minutes after
# kube-apiserver, 7 alone).
kube_build() {
  local cmd="$1" out="$TOOLS_DIR/$1-v$KUBE_VERSION"
  [ -x "$out/$cmd" ] && return 0
  log "building $cmd v$KUBE_VERSION (kube-apiserver: about 10 minutes, once)"
  local work; work="$(mktemp -d)"
  trap 'rm -rf "${work:-}"; trap - RETURN' RETURN
  ( cd "$work"
    go mod init hubcache.local/kubebuild >/dev/null 2>&1
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
    [ -f "$gomod" ] || die "cannot download k8s.io/kubernetes@v$KUBE_VERSION"
    local staging_version="v0.${KUBE_VERSION#1.}"
    {
      echo "require k8s.io/kubernetes v$KUBE_VERSION"
      grep -oE '^\s*k8s.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | sort -u |
        while read -r m; do echo "replace $m => $m $staging_version"; done
    } >> go.mod
    GOFLAGS=-mod=mod go build -o "$work/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  ) || die "building $cmd failed"
  mkdir -p "$out" && mv "$work/$cmd" "$out/$cmd"
}

etcd() {
  local out="$TOOLS_DIR/etcd-v$ETCD_VERSION"
  [ -x "$out/etcd" ] && return 0
  log "building etcd v$ETCD_VERSION (once)"
  local work; work="$(mktemp -d)"
  trap 'rm -rf "${work:-}"; trap - RETURN' RETURN
  ( cd "$work"
    go mod init hubcache.local/etcdbuild >/dev/null 2>&1
    go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1
    go build -o "$work/etcd" go.etcd.io/etcd/server/v3
  ) || die "building etcd failed"
  mkdir -p "$out" && mv "$work/etcd" "$out/etcd"
}

crane() {
  local out="$TOOLS_DIR/crane-$CRANE_VERSION"
  [ -x "$out/crane" ] && return 0
  log "installing crane $CRANE_VERSION"
  GOBIN="$out" go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" \
    || die "installing crane failed"
}

# minio builds the MinIO server (about 5 minutes, once): the S3 the blob store tests run against.
minio() {
  local out="$TOOLS_DIR/minio-$MINIO_VERSION"
  [ -x "$out/minio" ] && return 0
  log "building minio $MINIO_VERSION (about 5 minutes, once)"
  GOBIN="$out" go install "github.com/minio/minio@$MINIO_VERSION" || die "building minio failed"
}

# versitygw builds versitygw, a second and stricter S3 server (posix backend).
versitygw() {
  local out="$TOOLS_DIR/versitygw-$VERSITYGW_VERSION"
  [ -x "$out/versitygw" ] && return 0
  log "building versitygw $VERSITYGW_VERSION (once)"
  GOBIN="$out" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" \
    || die "building versitygw failed"
}

# conformance compiles the OCI distribution-spec conformance suite into a test binary.
conformance() {
  local out="$TOOLS_DIR/oci-conformance-$CONFORMANCE_VERSION"
  [ -x "$out/conformance.test" ] && return 0
  log "building the OCI conformance suite"
  local work; work="$(mktemp -d)"
  trap 'rm -rf "${work:-}"; trap - RETURN' RETURN
  ( cd "$work"
    go mod init hubcache.local/conformance >/dev/null 2>&1
    go get "github.com/opencontainers/distribution-spec/conformance@$CONFORMANCE_VERSION" >/dev/null 2>&1
    go test -c -o "$work/conformance.test" github.com/opencontainers/distribution-spec/conformance
  ) || die "building the conformance suite failed"
  mkdir -p "$out" && mv "$work/conformance.test" "$out/conformance.test"
}

# env prints the variables the tests read to find the tools.
# distribution is the peer registry the benchmarks compare against (proxy mode).
distribution() {
  local out="$TOOLS_DIR/distribution-$DISTRIBUTION_VERSION"
  [ -x "$out/registry" ] && return 0
  log "installing distribution registry $DISTRIBUTION_VERSION (benchmark peer)"
  GOBIN="$out" go install "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION" \
    || die "installing distribution failed"
}

print_env() {
  echo "export KUBEBUILDER_ASSETS=$TOOLS_DIR/envtest-v$KUBE_VERSION"
  echo "export HUBCACHE_CRANE=$TOOLS_DIR/crane-$CRANE_VERSION/crane"
  echo "export HUBCACHE_CONFORMANCE=$TOOLS_DIR/oci-conformance-$CONFORMANCE_VERSION/conformance.test"
  echo "export HUBCACHE_MINIO=$TOOLS_DIR/minio-$MINIO_VERSION/minio"
  echo "export HUBCACHE_DISTRIBUTION=$TOOLS_DIR/distribution-$DISTRIBUTION_VERSION/registry"
  echo "export HUBCACHE_VERSITYGW=$TOOLS_DIR/versitygw-$VERSITYGW_VERSION/versitygw"
  echo "export HUBCACHE_KUBELET=$TOOLS_DIR/kubelet-v$KUBE_VERSION/kubelet"
}

# envtest gathers kube-apiserver, etcd and kubectl in the folder controller-runtime's envtest reads.
envtest() {
  kube_build kube-apiserver
  kube_build kubectl
  etcd
  local dir="$TOOLS_DIR/envtest-v$KUBE_VERSION"
  mkdir -p "$dir"
  ln -sf "$TOOLS_DIR/kube-apiserver-v$KUBE_VERSION/kube-apiserver" "$dir/kube-apiserver"
  ln -sf "$TOOLS_DIR/etcd-v$ETCD_VERSION/etcd" "$dir/etcd"
  ln -sf "$TOOLS_DIR/kubectl-v$KUBE_VERSION/kubectl" "$dir/kubectl"
}

mkdir -p "$TOOLS_DIR"
case "${1:-all}" in
  apt) apt_pkgs ;;
  kube-apiserver) kube_build kube-apiserver ;;
  kubectl) kube_build kubectl ;;
  kubelet) kube_build kubelet ;;
  etcd) etcd ;;
  envtest) envtest ;;
  crane) crane ;;
  conformance) conformance ;;
  minio) minio ;;
  versitygw) versitygw ;;
  distribution) distribution ;;
  env) print_env ;;
  all) apt_pkgs; envtest; kube_build kubelet; crane; conformance; minio; versitygw ;;
  *) die "unknown tool $1" ;;
esac
