#!/usr/bin/env bash
# The package as users get it: `npm pack` (its prepack script builds dist/), the tarball's file list checked, then
# the two apps of fixtures/, made by the Nest CLI's own `nest new` and committed with their lockfiles, install that
# tarball and run fixtures/check.mjs: a CommonJS Nest 11 + TypeORM 0.3 app tested with Jest, and an ES module Nest
# 12 + TypeORM 1 app tested with Vitest and with Jest in ESM mode. Each is built with tsc and with SWC, and each
# build boots and passes the HTTP checks on a fresh database on PostgreSQL 15 at 127.0.0.1:5432 (skipped, and said
# so, when nothing answers there); the apps' own e2e tests run with no DATABASE_URL (nestjs-txlock/testing starts an
# embedded PostgreSQL); all of it on Node.js 20.19, 22 and 24 (.ci/node.sh). Each app prints
# "<app>: N passed, N failed"; the script exits non-zero when a check, the pack contents or an app's build failed.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x node_modules/.bin/tsc ] || npm ci --no-audit --no-fund
source .ci/node.sh
node_dirs=("$(node_dir 20)" "$(node_dir 22)" "$(node_dir 24)")

out=$(mktemp -d)
echo "== fixtures: npm pack =="
npm pack --json --pack-destination "$out" > "$out/pack.json"
node .ci/pack-contents.mjs "$out/pack.json"
tarball="$out/$(node -e "console.log(require(process.argv[1])[0].filename)" "$out/pack.json")"

LOCAL_URL="postgres://postgres@127.0.0.1:5432/postgres"
if ! node -e "const c=new (require('pg').Client)({connectionString:process.argv[1],connectionTimeoutMillis:3000});c.connect().then(()=>c.end()).then(()=>process.exit(0),()=>process.exit(1))" "$LOCAL_URL"; then
  echo "== fixtures: skipped: no PostgreSQL answers at 127.0.0.1:5432, so the fixture apps did not run =="
  exit 0
fi

# Both apps at once (each mostly waits on npm or runs one single-threaded tsc), each into its own log, shown in order.
apps=(cjs-nest11-typeorm03 esm-nest12-typeorm1)
pids=()
for app in "${apps[@]}"; do
  DATABASE_URL="$LOCAL_URL" node fixtures/check.mjs "fixtures/$app" "$tarball" "${node_dirs[@]}" > "$out/$app.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!apps[@]}"; do
  wait "${pids[$i]}" || status=1
  echo "== fixtures: fixtures/${apps[$i]} =="
  cat "$out/${apps[$i]}.log"
done
rm -rf "$out"
exit "$status"
