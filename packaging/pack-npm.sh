#!/bin/sh
# packaging/pack-npm.sh OUTDIR: packs the Node SDK as napi-rs lays out a release, into OUTDIR:
#   modproxy-sdk-VERSION.tgz                 the JavaScript package, with no binary in it, naming
#                                            the platform package as an optional dependency
#   modproxy-sdk-linux-x64-gnu-VERSION.tgz   the prebuilt addon (sdk-node/npm/linux-x64-gnu/)
# The addon must have been built (`make node-sdk`). The optional dependency is added to a staged copy
# of package.json only, as `napi prepublish` does, so that installing in sdk-node never asks the
# registry for a platform package that is not published.
set -eu

out=$(mkdir -p "$1" && cd "$1" && pwd)
node_dir=$(cd "$(dirname "$0")/../sdk-node" && pwd)
platform=linux-x64-gnu
addon=$node_dir/modproxy-sdk.$platform.node
for built in "$addon" "$node_dir/native.js"; do
  [ -f "$built" ] || { echo "pack-npm.sh: $built is missing; run \`make node-sdk\` first" >&2; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

mkdir "$stage/platform" "$stage/main"
cp "$node_dir/npm/$platform/package.json" "$node_dir/npm/$platform/README.md" "$addon" "$stage/platform/"
cp "$node_dir/package.json" "$node_dir/README.md" "$node_dir/index.js" "$node_dir/index.mjs" \
  "$node_dir/index.d.ts" "$node_dir/native.js" "$stage/main/"

# The platform package's name and version go into the main package's optionalDependencies; both
# versions must agree, which napi-rs's loader checks at run time too.
node - "$stage/main/package.json" "$stage/platform/package.json" <<'JS'
const fs = require('node:fs');
const [mainPath, platformPath] = process.argv.slice(2);
const main = JSON.parse(fs.readFileSync(mainPath, 'utf8'));
const platform = JSON.parse(fs.readFileSync(platformPath, 'utf8'));
if (platform.version !== main.version) {
  console.error(`pack-npm.sh: ${platform.name} is ${platform.version}, modproxy-sdk is ${main.version}`);
  process.exit(1);
}
main.optionalDependencies = { [platform.name]: platform.version };
delete main.devDependencies;
delete main.scripts;
fs.writeFileSync(mainPath, JSON.stringify(main, null, 2) + '\n');
JS

for package in platform main; do
  (cd "$stage/$package" && npm pack --silent --pack-destination "$out" >/dev/null)
done
ls "$out"/*.tgz
