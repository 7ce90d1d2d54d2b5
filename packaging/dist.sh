#!/bin/sh
# packaging/dist.sh BINARY OUTDIR [SUFFIX]: packs the release layout around BINARY into
# OUTDIR/modproxy-VERSION[SUFFIX].tar.gz and prints the tarball's path. VERSION is what the binary
# reports; the tarball holds modproxy-VERSION/{bin/modproxy, conf/default.toml, html/, logs/, start.sh, stop.sh}.
set -eu

binary=$1
outdir=$2
suffix=${3:-}
repo=$(cd "$(dirname "$0")/.." && pwd)

version=$("$binary" --version | awk '{print $2}')
name=modproxy-$version
mkdir -p "$outdir"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

root=$stage/$name
mkdir -p "$root/bin" "$root/conf" "$root/logs"
cp "$binary" "$root/bin/modproxy"
cp "$repo/conf/default.toml" "$root/conf/"
cp -R "$repo/html" "$root/html"
cp "$repo/packaging/start.sh" "$repo/packaging/stop.sh" "$root/"
chmod 755 "$root/bin/modproxy" "$root/start.sh" "$root/stop.sh"

tarball=$(cd "$outdir" && pwd)/$name$suffix.tar.gz
tar -C "$stage" -czf "$tarball" "$name"
echo "$tarball"
