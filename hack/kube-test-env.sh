#!/usr/bin/env bash
# Prepares what the Kubernetes tests run against, once per machine:
#   - etcd, from Debian's etcd-server package when no etcd is on PATH;
#   - kube-apiserver $KUBE_VERSION, built from the Go module proxy (k8s.io/kubernetes with
#     every staging module replaced by its published v0.x version), cached under
#     ${XDG_CACHE_HOME:-~/.cache}/wafplane/;
#   - the Istio and Envoy Gateway modules whose CRDs the injector tests install, in the Go
#     module cache.
# The tests find the binary at that path (discovery/kubernetes/envtest_test.go).
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/wafplane"
BIN="$CACHE/kube-apiserver-$KUBE_VERSION"
GO="${GO:-go}"

if ! command -v etcd >/dev/null 2>&1; then
	echo "kube-test-env: installing etcd-server" >&2
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO="sudo"
	$SUDO apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server >&2
fi

# CRDs of the proxies the injector protects, pinned as in discovery/kubernetes/kubetest.
for mod in istio.io/api@v1.32.0 github.com/envoyproxy/gateway@v1.9.1; do
	"$GO" mod download "$mod" >&2
done

if [ ! -x "$BIN" ]; then
	echo "kube-test-env: building kube-apiserver $KUBE_VERSION (a few minutes, once)" >&2
	mkdir -p "$CACHE"
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	cd "$work"
	"$GO" mod init wafplane.local/kube-apiserver >/dev/null 2>&1
	# The staging modules are whatever k8s.io/kubernetes replaces with ./staging.
	gomod="$("$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
	modfile="$(cat "$gomod")"
	{
		echo "require k8s.io/kubernetes $KUBE_VERSION"
		echo "replace ("
		echo "$modfile" | sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$STAGING_VERSION"'#p'
		echo ")"
	} >>go.mod
	GOFLAGS=-mod=mod "$GO" get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" >&2
	CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" build -trimpath -o "$BIN.tmp" k8s.io/kubernetes/cmd/kube-apiserver
	mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
