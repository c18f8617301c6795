#!/usr/bin/env bash
# busybox-context.sh DIR: writes the build context of kiln's busybox base image to DIR: the files
# of testdata/busybox plus the host's static busybox (installed from Debian's busybox-static when
# missing). Build it with: kiln build -t busybox:latest DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:?usage: busybox-context.sh DIR}
if ! dpkg -s busybox-static >/dev/null 2>&1; then
  echo "busybox-context: installing busybox-static" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
mkdir -p "$dest"
cp "$here"/testdata/busybox/{Dockerfile,passwd,group} "$dest"/
cp /bin/busybox "$dest/busybox"
