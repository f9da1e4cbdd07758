#!/usr/bin/env bash
# The oldest versions nestjs-txlock supports, from their own lockfile (compat/nest11-typeorm03: Nest 11.0.0,
# @nestjs/typeorm 11.0.0, TypeORM 0.3.20, pg 8.11.0, rxjs 7.8.0): lib/ type-checks against their declarations,
# then a named subset of the test suite (test/transaction, test/locks, test/counters, test/atomic, test/e2e) runs
# against them (compat/jest.config.js), on the Node.js first on PATH (.ci/run puts 20.19.0 there, the oldest the
# package supports). On the embedded PostgreSQL 18 that the test harness starts (it runs in .ci/run's embedded lane,
# beside the PostgreSQL 15 lane).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x node_modules/.bin/jest ] || npm ci --no-audit --no-fund
(cd compat/nest11-typeorm03 && npm ci --no-audit --no-fund --loglevel=error)

echo "== compat: lib/ type-checked against Nest 11.0 + TypeORM 0.3.20 declarations (Node $(node --version)) =="
npx tsc -p compat/tsconfig.json

unset DATABASE_URL
echo "== compat: test subset on Nest 11.0 + TypeORM 0.3.20, on the embedded PostgreSQL 18 =="

results=$(mktemp -d)
# resolve-hook.js sends the worker processes that tests spawn to the cell's packages, as the jest config does for the tests.
status=0
NODE_OPTIONS="--experimental-vm-modules --import ./compat/resolve-hook.js" npx jest -c compat/jest.config.js --json --outputFile="$results/compat.json" || status=$?
node -e "const r=require(process.argv[1]);console.log('compat: '+r.numPassedTests+' passed, '+r.numFailedTests+' failed')" "$results/compat.json"
exit "$status"
