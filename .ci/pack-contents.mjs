// Checks what `npm pack --json` put in the tarball (.ci/fixtures.sh): exactly the built library (dist/: one .js and
// one .d.ts per lib/ source; dist/cjs/: one .js per lib/ source and the package.json that marks it CommonJS; the
// CommonJS type entries that package.json "exports" names), README.md, LICENSE, CHANGELOG.md,
// docs/ when the repository has it, and package.json; no tests, sample, bench, fixtures, compat cells, sources or
// source maps.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const [report] = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { exports } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const packed = new Set(report.files.map((file) => file.path));
const root = new URL('..', import.meta.url).pathname;

const walk = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
const sources = walk(join(root, 'lib')).map((file) => relative(join(root, 'lib'), file)).filter((file) => file.endsWith('.ts'));
const docs = existsSync(join(root, 'docs')) ? walk(join(root, 'docs')).map((file) => relative(root, file)) : [];

const cjsTypes = Object.values(exports).flatMap((entry) => (entry?.require?.types ? [entry.require.types.replace(/^\.\//, '')] : []));
const expected = new Set([
  'package.json',
  'README.md',
  'LICENSE',
  'CHANGELOG.md',
  ...cjsTypes,
  'dist/cjs/package.json',
  ...sources.flatMap((file) => [`dist/${file.replace(/\.ts$/, '.js')}`, `dist/${file.replace(/\.ts$/, '.d.ts')}`, `dist/cjs/${file.replace(/\.ts$/, '.js')}`]),
  ...docs,
]);
const missing = [...expected].filter((file) => !packed.has(file));
const unexpected = [...packed].filter((file) => !expected.has(file));

console.log(`pack: ${report.filename}, ${packed.size} files, ${(report.size / 1024).toFixed(0)} kB packed, ${(report.unpackedSize / 1024).toFixed(0)} kB unpacked`);
console.log(`pack: dist/ holds ${sources.length} modules (.js + .d.ts each), dist/cjs/ their CommonJS build, and ${cjsTypes.join(', ')}; docs/ ${docs.length} files (docs/api/ included); README.md, LICENSE, CHANGELOG.md`);
for (const file of missing) console.log(`pack: MISSING ${file}`);
for (const file of unexpected) console.log(`pack: UNEXPECTED ${file}`);
process.exit(missing.length + unexpected.length === 0 ? 0 : 1);
