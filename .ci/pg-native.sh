#!/usr/bin/env bash
# CI: the pg-native pass. TypeORM runs every DataSource on pg's native client (libpq) as soon as the pg-native
# package can be loaded, and that client shows no BackendKeyData, so the check that session-scope locks talk
# straight to their backend works differently there (lib/server/connection-path.ts). This pass installs pg-native
# from its own lockfile (.ci/pg-native/: its libpq dependency compiles with node-gyp against the libpq headers, so
# libpq-dev is installed with apt-get when pg_config is missing), puts it on NODE_PATH for this run only (the other
# passes never see it), and runs the session-lock and server tests on the machine's PostgreSQL 15; it prints
# "pg-native: N passed, N failed". Skips (exit 0, with the reason) when there is no PostgreSQL, or no way to build.
set -euo pipefail
cd "$(dirname "$0")/.."

DIRECT_URL="postgres://postgres@127.0.0.1:5432/postgres"
# Session-scope locks and the connection-path check, the bootstrap server check, and the library's prepared
# statements (on only where that check sees a direct connection).
SUBSET=(test/locks/session-lock.spec.ts test/locks/session-lock-pooler.spec.ts test/server test/transaction/prepared-statements.spec.ts)

skip() {
  echo "== skipped: the pg-native pass did not run: $1 =="
  exit 0
}

echo "== tests on pg's native client (pg-native) against PostgreSQL at 127.0.0.1:5432 =="
node -e "const c=new (require('pg').Client)({connectionString:process.argv[1],connectionTimeoutMillis:3000});c.connect().then(()=>c.end()).then(()=>process.exit(0),()=>process.exit(1))" "$DIRECT_URL" ||
  skip "no PostgreSQL answers at 127.0.0.1:5432"

if ! command -v pg_config >/dev/null; then
  command -v apt-get >/dev/null || skip "pg_config (libpq-dev) is missing and apt-get is not available to install it"
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else skip "libpq-dev is missing and apt-get needs root (no passwordless sudo)"; fi
  install_log=$(mktemp)
  echo "installing Debian's libpq-dev with apt-get (libpq's headers, for pg-native's build)..."
  if ! DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends libpq-dev >"$install_log" 2>&1; then
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get update >>"$install_log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends libpq-dev >>"$install_log" 2>&1 ||
      { tail -n 5 "$install_log"; skip "apt-get install libpq-dev failed (log above)"; }
  fi
fi

# A failed build is a failure, not a skip: the tools it needs (python3, make, g++) come with this kind of machine.
(cd .ci/pg-native && npm ci --no-audit --no-fund --loglevel=error)
export NODE_PATH="$PWD/.ci/pg-native/node_modules"
node -e "if (!require('pg').native) process.exit(1)" || { echo "pg-native was installed but require('pg').native is null"; exit 1; }

results=$(mktemp -d)
status=0
# TXLOCK_TEST_PG_NATIVE: the tests fail rather than skip their native cases should pg-native not load in jest.
DATABASE_URL="$DIRECT_URL" TXLOCK_TEST_PG_NATIVE=1 npm test -- "${SUBSET[@]}" --json --outputFile="$results/pg-native.json" || status=$?
node -e "const r=require(process.argv[1]);console.log('pg-native: '+r.numPassedTests+' passed, '+r.numFailedTests+' failed')" "$results/pg-native.json"
exit "$status"
