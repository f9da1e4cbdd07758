// Writes the CommonJS type entries that package.json "exports" names (the "types" of each "require" condition, a
// .d.cts) after tsc has built dist/: one line re-exporting the ES module declarations beside it. TypeScript refuses
// to let a CommonJS file import ES module types under module node16 (and nodenext before TypeScript 5.8), although
// Node >= 20.19 loads the package with require(); these entries describe exactly what that require() returns.
import { readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

const { exports } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
for (const entry of Object.values(exports)) {
  const types = entry?.require?.types;
  if (!types) continue;
  writeFileSync(new URL(`../${types}`, import.meta.url), `export * from './${basename(types, '.d.cts')}.js';\n`);
}
