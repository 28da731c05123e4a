#!/usr/bin/env bash
# Builds the real Kubernetes control plane from source through the Go module proxy:
# kube-apiserver, kube-controller-manager and kubectl of one Kubernetes release, and the etcd release
# that release is tested with (its go.mod requires go.etcd.io/etcd/* v3.7).
#
# k8s.io/kubernetes is not meant to be imported as a module: its go.mod points every k8s.io/* staging
# module at ./staging. A wrapper module that requires it and replaces each staging module with its
# published v0.<minor>.<patch> version builds its commands. etcd's command is the main package of its
# server module. Binaries go to build/control-plane/<release>/ and are reused when present.
#
# Usage: hack/build-control-plane.sh            (prints the folder holding the binaries, last)
# Env:   KUBE_VERSION (v1.37.2), ETCD_VERSION (v3.7.3), CONTROL_PLANE_DIR (where binaries go)
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${CONTROL_PLANE_DIR:-$root/build/control-plane/$KUBE_VERSION}
binaries=(kube-apiserver kube-controller-manager kubectl etcd)

have_all() {
  for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done
}
if have_all; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build-control-plane: the go command is needed (Go >= 1.26)" >&2; exit 1; }
mkdir -p "$out"
started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# --- Kubernetes ---------------------------------------------------------------------------------
staging_version="v0.${KUBE_VERSION#v1.}"
kube_mod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
mkdir -p "$work/kube" && cd "$work/kube"
go mod init autoscene.io/control-plane >/dev/null 2>&1
go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
# Every "k8s.io/x => ./staging/src/k8s.io/x" line becomes "k8s.io/x => k8s.io/x v0.N.P".
for module in $(sed -n 's#^\s*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$kube_mod"); do
  go mod edit -replace="$module=$module@$staging_version"
done
commands=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
for c in "${commands[@]}"; do go mod edit -tool="$c"; done
go mod tidy >/dev/null
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  version_flags+=" -X $pkg.gitTreeState=clean"
done
for c in "${commands[@]}"; do
  t0=$(date +%s)
  go build -trimpath -ldflags "-s -w $version_flags" -o "$out/$(basename "$c")" "$c"
  echo "built $(basename "$c") $KUBE_VERSION in $(( $(date +%s) - t0 )) s" >&2
done

# --- etcd -----------------------------------------------------------------------------------------
mkdir -p "$work/etcd" && cd "$work/etcd"
go mod init autoscene.io/control-plane-etcd >/dev/null 2>&1
go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" -tool=go.etcd.io/etcd/server/v3
go mod tidy >/dev/null
t0=$(date +%s)
go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
echo "built etcd $ETCD_VERSION in $(( $(date +%s) - t0 )) s" >&2

echo "control plane built in $(( $(date +%s) - started )) s" >&2
echo "$out"
