#!/usr/bin/env bash
# test.sh: installs what kiln's tests need (Debian packages: busybox-static for the base image;
# skopeo, umoci and docker-registry to check images with real tools; git, openssh-client, procps
# and xz-utils for ADD from git, the ssh agent forwarding, process checks and xz archives) and
# runs the whole suite:
# go vet, gofmt, and every test, as root (the tests mount overlays and make namespaces and cgroups).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
want=(busybox-static skopeo umoci docker-registry git openssh-client procps xz-utils)
missing=()
for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "test: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n $unformatted ]]; then echo "gofmt: not formatted: $unformatted" >&2; exit 1; fi
go vet ./...
go test -count=1 -timeout 40m "$@" ./...
