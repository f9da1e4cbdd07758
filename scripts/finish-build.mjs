// Finishes the two builds tsc made (npm run build): dist/ (ES modules, tsconfig.build.json) and dist/cjs/
// (CommonJS, tsconfig.cjs.json).
// - dist/cjs/package.json marks that folder CommonJS, so Node (and Jest's CommonJS runtime) load its .js files
//   with require() while the package itself is "type": "module".
// - The CommonJS type entries that package.json "exports" names (each "require" condition's "types", a .d.cts):
//   one line re-exporting the ES module declarations beside it, so both builds share one set of declarations.
//   TypeScript refuses to let CommonJS code import ES module types under module node16 (and nodenext before 5.8);
//   these entries describe exactly what require() returns.
// - Both builds' copy of lib/common/process-state.ts gets package.json's version in place of its placeholder:
//   copies of one version share their process-wide state, copies of different versions keep their own.
import { readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

const packageJson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

writeFileSync(new URL('../dist/cjs/package.json', import.meta.url), `${JSON.stringify({ type: 'commonjs' })}\n`);

for (const entry of Object.values(packageJson.exports)) {
  const types = entry?.require?.types;
  if (!types) continue;
  writeFileSync(new URL(`../${types}`, import.meta.url), `export * from './${basename(types, '.d.cts')}.js';\n`);
}

const placeholder = "'0.0.0-source'";
for (const build of ['dist', 'dist/cjs']) {
  const file = new URL(`../${build}/common/process-state.js`, import.meta.url);
  const text = readFileSync(file, 'utf8');
  if (text.split(placeholder).length !== 2) throw new Error(`${build}/common/process-state.js: expected the version placeholder ${placeholder} once`);
  writeFileSync(file, text.replace(placeholder, JSON.stringify(packageJson.version).replace(/"/g, "'")));
}
