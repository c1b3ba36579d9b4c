#!/usr/bin/env bash
# Build (or reuse) the real control plane for the end-to-end tests: kube-apiserver,
# kube-scheduler and kubectl from k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3,
# at the versions pinned in hack/kube/go.mod (go.sum holds every module's checksum).
#
# Output: a versioned directory OUTSIDE git, rebuilt only when the pin changes:
#   ${E2E_KUBE_CACHE:-${XDG_CACHE_HOME:-~/.cache}/gputopo/kube}/<k8s>-<etcd>-<go>-<hash>/
# holding bin/{kube-apiserver,kube-scheduler,kubectl,etcd} and versions.txt. The directory
# is printed on the LAST line of stdout (everything else goes to stderr), so callers can do
#   dir=$(bash hack/kube/build.sh | tail -n1)
#
# Needs: `go` on PATH and the Go module proxy (GOPROXY). The toolchain is pinned by the
# `toolchain` line of go.mod and exported as GOTOOLCHAIN, so a machine whose own Go differs
# fetches exactly that toolchain from the proxy instead of building with another one.
# Build flags keep a cold build short on 2 cores: -trimpath (cache hits across checkouts),
# -ldflags=-s -w (no symbol table / DWARF: smaller, faster links). Times: docs/e2e.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() {
	echo "hack/kube/build.sh: error: $*" >&2
	exit 1
}

toolchain=$(awk '$1 == "toolchain" {print $2}' go.mod)
[ -n "$toolchain" ] || die "hack/kube/go.mod has no 'toolchain' line"
k8s_version=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' go.mod)
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' go.mod)
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || die "cannot read the k8s.io/kubernetes / etcd pins from go.mod"
export GOTOOLCHAIN="$toolchain"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"

# What decides the binaries: the pins, the toolchain and the build recipe (bump RECIPE when
# the go build line below changes); not this script's comments.
RECIPE=1
hash=$( (cat go.mod go.sum; echo "$toolchain recipe $RECIPE") | sha256sum | cut -c1-12)
root="${E2E_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gputopo/kube}"
dir="$root/k8s-$k8s_version-etcd-$etcd_version-$toolchain-$hash"
binaries=(kube-apiserver kube-scheduler kubectl etcd)

complete() {
	[ -f "$dir/.complete" ] || return 1
	for b in "${binaries[@]}"; do [ -x "$dir/bin/$b" ] || return 1; done
}

mkdir -p "$root"
exec 9>"$root/.lock"
flock 9 # one build at a time (parallel test workers, two shells)

if complete; then
	echo "kube binaries up to date ($k8s_version, etcd $etcd_version)" >&2
	echo "$dir"
	exit 0
fi

command -v go >/dev/null 2>&1 || die "the Go toolchain is not installed (no 'go' on PATH).
  The e2e tests build kube-apiserver, kube-scheduler and etcd from their Go modules;
  install Go (the version in hack/kube/go.mod's 'toolchain' line or any Go >= 1.21 that can
  fetch it) and make the Go module proxy reachable, or point E2E_KUBE_BIN at a directory
  holding those binaries."

proxy=$(go env GOPROXY 2>/dev/null) || die "'go env' failed with GOTOOLCHAIN=$toolchain: the pinned toolchain
  is not installed and could not be fetched from the Go module proxy (GOPROXY=${GOPROXY:-default})"
case "$proxy" in
off | "") die "GOPROXY is '$proxy': the build downloads k8s.io/kubernetes and go.etcd.io/etcd from the Go module proxy" ;;
esac
echo "building kube-apiserver, kube-scheduler, kubectl $k8s_version and etcd $etcd_version with $toolchain" >&2
echo "  (cold: 8-14 min on 2 shared cores, see docs/e2e.md; module cache $(go env GOMODCACHE), build cache $(go env GOCACHE))" >&2
start=$(date +%s)
if ! go mod download >&2; then
	die "downloading the modules failed: is the Go module proxy ($proxy) reachable?"
fi
tmp="$root/.tmp-$$"
rm -rf "$tmp"
mkdir -p "$tmp/bin"
trap 'rm -rf "$tmp"' EXIT
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
minor=$(echo "$k8s_version" | cut -d. -f2)
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
ldflags="$ldflags -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=$build_date"
# One invocation: the four programs share most packages and compile in one action graph.
go build -trimpath -ldflags "$ldflags" -o "$tmp/bin/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
	go.etcd.io/etcd/server/v3 >&2
mv "$tmp/bin/server" "$tmp/bin/etcd" # go names go.etcd.io/etcd/server/v3's program "server"
{
	echo "kubernetes $k8s_version"
	echo "etcd $etcd_version"
	echo "go $toolchain"
	echo "built $build_date in $(($(date +%s) - start))s"
} >"$tmp/versions.txt"
touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "built in $(($(date +%s) - start))s" >&2
echo "$dir"
