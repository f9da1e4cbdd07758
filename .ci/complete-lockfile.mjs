// The registry this project installs from lacks some of unrs-resolver's platform binaries (a jest 30
// dependency), so `npm install` leaves them out of package-lock.json and `npm ci` then refuses the lock.
// This records each missing optional binary with its os/cpu, as the public registry would, so `npm ci`
// skips it on other platforms. Run it after any `npm install` that rewrites the lock.
import { readFileSync, writeFileSync } from 'node:fs';

const path = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(path, 'utf8'));
let added = 0;
for (const [location, entry] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const nested = `${location}/node_modules/${name}`;
    const hoisted = `node_modules/${name}`;
    if (lock.packages[nested] || lock.packages[hoisted]) continue;
    const match = /binding-([a-z0-9]+)-([a-z0-9]+)(?:-([a-z0-9]+))?$/.exec(name);
    if (!match) continue;
    const [, os, cpu, abi] = match;
    lock.packages[hoisted] = {
      version,
      cpu: [cpu],
      os: [os],
      ...(abi && /musl|gnu/.test(abi) ? { libc: [abi.startsWith('musl') ? 'musl' : 'glibc'] } : {}),
      optional: true,
      license: 'MIT',
    };
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))));
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`complete-lockfile: recorded ${added} missing optional binaries`);
