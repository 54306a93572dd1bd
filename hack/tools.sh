#!/usr/bin/env bash
# Builds the binaries the tests and the demo need, from the Go module proxy only,
# pinned, into a versioned cache outside the clone. Does nothing when they are there.
#
#   hack/tools.sh [control-plane|helm|staticcheck|all]   (default: all)
#   hack/tools.sh path                                     prints the cache folder
#
# kube-apiserver, kube-controller-manager and kubectl cannot be `go install`ed: the
# k8s.io/kubernetes module replaces its staging modules with ./staging paths. So we
# build them from a throwaway module that requires k8s.io/kubernetes and replaces each
# staging module with its published v0.x twin.
set -euo pipefail

K8S_VERSION=v1.37.2
K8S_STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.7.4
ETCD_FALLBACK_VERSION=v3.7.3
HELM_VERSION=v4.3.2
STATICCHECK_VERSION=v0.8.2

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/regcred-webhook"
ASSETS="$CACHE_ROOT/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION%.*}/bin"
TOOLS="$CACHE_ROOT/tools"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'hack/tools.sh: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH: install Go 1.26 first"

# Builds into a temporary file and renames, so an interrupted build never leaves a
# half-written binary that the next run would take for a cached one.
atomic_build() { # out dir pkg ldflags
  local out=$1 dir=$2 pkg=$3 ldflags=$4
  mkdir -p "$(dirname "$out")"
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp.$$" "$pkg")
  mv -f "$out.tmp.$$" "$out"
}

k8s_ldflags() {
  local v=$K8S_VERSION minor
  minor=$(echo "$v" | cut -d. -f2)
  local x=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "-s -w$x"
}

build_kube() {
  local want=()
  for b in kube-apiserver kube-controller-manager kubectl; do
    [ -x "$ASSETS/$b" ] || want+=("$b")
  done
  [ ${#want[@]} -eq 0 ] && return 0
  log "building ${want[*]} $K8S_VERSION from the Go module proxy (3-6 min cold, seconds warm)"
  local mod
  mod=$(mktemp -d)
  trap 'rm -rf "$mod"' RETURN
  (
    cd "$mod"
    go mod init regcred-webhook.local/kube-build >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION's go.mod"
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | while read -r m; do
      go mod edit -replace="$m=$m@$K8S_STAGING_VERSION"
    done
    # An empty main package so `go mod tidy` keeps what the binaries import.
    {
      echo 'package main'
      echo 'import ('
      echo '  _ "k8s.io/kubernetes/cmd/kube-apiserver/app"'
      echo '  _ "k8s.io/kubernetes/cmd/kube-controller-manager/app"'
      echo '  _ "k8s.io/kubectl/pkg/cmd"'
      echo ')'
      echo 'func main() {}'
    } >main.go
    go mod tidy >/dev/null 2>&1 || go mod tidy
  )
  local ld
  ld=$(k8s_ldflags)
  for b in "${want[@]}"; do
    local pkg=k8s.io/kubernetes/cmd/$b
    log "  go build $pkg"
    atomic_build "$ASSETS/$b" "$mod" "$pkg" "$ld"
  done
}

build_etcd() {
  [ -x "$ASSETS/etcd" ] && return 0
  local mod v
  mod=$(mktemp -d)
  trap 'rm -rf "$mod"' RETURN
  for v in "$ETCD_VERSION" "$ETCD_FALLBACK_VERSION"; do
    log "building etcd $v from the Go module proxy"
    if (cd "$mod" && rm -f go.mod go.sum && go mod init regcred-webhook.local/etcd-build >/dev/null 2>&1 &&
      printf 'package main\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\nfunc main() {}\n' >main.go &&
      go get "go.etcd.io/etcd/server/v3@$v" >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1); then
      atomic_build "$ASSETS/etcd" "$mod" go.etcd.io/etcd/server/v3 \
        "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$v"
      return 0
    fi
    log "  etcd $v is not served here; trying the next pinned version"
  done
  die "could not build etcd ($ETCD_VERSION or $ETCD_FALLBACK_VERSION) from the Go module proxy"
}

build_helm() {
  [ -x "$TOOLS/helm-$HELM_VERSION" ] && return 0
  log "building helm $HELM_VERSION from the Go module proxy"
  GOBIN="$TOOLS/.gobin.$$" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  mv -f "$TOOLS/.gobin.$$/helm" "$TOOLS/helm-$HELM_VERSION"
  rm -rf "$TOOLS/.gobin.$$"
}

build_staticcheck() {
  [ -x "$TOOLS/staticcheck-$STATICCHECK_VERSION" ] && return 0
  log "building staticcheck $STATICCHECK_VERSION from the Go module proxy"
  GOBIN="$TOOLS/.gobin.$$" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
  mv -f "$TOOLS/.gobin.$$/staticcheck" "$TOOLS/staticcheck-$STATICCHECK_VERSION"
  rm -rf "$TOOLS/.gobin.$$"
}

case "${1:-all}" in
  control-plane) build_kube; build_etcd ;;
  helm) build_helm ;;
  staticcheck) build_staticcheck ;;
  all) build_staticcheck; build_helm; build_kube; build_etcd ;;
  path) ;;
  assets) echo "$ASSETS"; exit 0 ;;
  helm-path) echo "$TOOLS/helm-$HELM_VERSION"; exit 0 ;;
  staticcheck-path) echo "$TOOLS/staticcheck-$STATICCHECK_VERSION"; exit 0 ;;
  *) die "unknown target '$1': use control-plane, helm, staticcheck, all, assets, helm-path or staticcheck-path" ;;
esac
[ "${1:-all}" = path ] && echo "$CACHE_ROOT"
exit 0
