#!/usr/bin/env bash
# example.sh: builds kiln, builds the busybox base image from the host's busybox-static (installing
# it when missing), builds the example image of testdata/example on it, and runs it. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
export KILN_ROOT=${KILN_ROOT:-/var/lib/kiln}
mkdir -p bin
go build -o bin/kiln ./cmd/kiln
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
scripts/busybox-context.sh "$ctx"
bin/kiln build --progress plain -t busybox:latest "$ctx"
bin/kiln build --progress plain -t kiln-example:latest testdata/example
bin/kiln images
bin/kiln run kiln-example:latest
