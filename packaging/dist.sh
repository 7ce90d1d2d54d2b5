#!/bin/sh
# packaging/dist.sh BINARY WHEEL CRATE OUTDIR [SUFFIX]: packs the release layout around BINARY into
# OUTDIR/modproxy-VERSION[SUFFIX].tar.gz and prints the tarball's path. VERSION is what the binary
# reports; the tarball holds modproxy-VERSION/ with
#   bin/modproxy, conf/default.toml, html/, logs/, start.sh, stop.sh, modproxy.service
#   sdk/  the SDKs as their ecosystems install them: the Python WHEEL, the npm tarballs (pack-npm.sh),
#         the Rust CRATE and its source unpacked beside it (for a path dependency), and a README.
set -eu

binary=$1
wheel=$2
crate=$3
outdir=$4
suffix=${5:-}
repo=$(cd "$(dirname "$0")/.." && pwd)

version=$("$binary" --version | awk '{print $2}')
name=modproxy-$version
mkdir -p "$outdir"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

root=$stage/$name
mkdir -p "$root/bin" "$root/conf" "$root/logs" "$root/sdk"
cp "$binary" "$root/bin/modproxy"
cp "$repo/conf/default.toml" "$root/conf/"
cp -R "$repo/html" "$root/html"
cp "$repo/packaging/start.sh" "$repo/packaging/stop.sh" "$repo/packaging/modproxy.service" "$root/"
chmod 755 "$root/bin/modproxy" "$root/start.sh" "$root/stop.sh"

# The SDKs, all of the same version as the proxy (one workspace); `modproxy new` looks for them here.
for sdk in "$wheel" "$crate"; do
  case $(basename "$sdk") in
    *-"$version"-*.whl | *-"$version".crate) cp "$sdk" "$root/sdk/" ;;
    *) echo "dist.sh: $sdk is not of version $version" >&2; exit 1 ;;
  esac
done
tar -C "$root/sdk" -xzf "$crate"
"$repo/packaging/pack-npm.sh" "$root/sdk" >/dev/null
cp "$repo/packaging/sdk-README.md" "$root/sdk/README.md"

tarball=$(cd "$outdir" && pwd)/$name$suffix.tar.gz
tar -C "$stage" -czf "$tarball" "$name"
echo "$tarball"
