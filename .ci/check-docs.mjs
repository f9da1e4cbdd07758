// Compiles every ```ts block of README.md and docs/*.md against the library's sources, so an example that no
// longer matches the API fails CI, and checks their links. A block's info string says what it is:
//   ```ts                      a complete module, imports included
//   ```<any> file=<path>       a block that must also be that file, character for character; only ```ts blocks are
//                              compiled (```typescript: a config file of a tool the repository does not install)
//   ```ts module=commonjs      compiled as CommonJS (a .cts file: extensionless relative imports, as CommonJS apps write)
//   ```ts fragment             statements, run inside an async method of a class (so `this.tx`, `this.counters`...)
//   ```ts fragment=class       class members (methods with decorators, a constructor)
//   ```ts fragment=module      top-level declarations
// Fragments get the imports an app would write (every export of nestjs-txlock and nestjs-txlock/testing, and the
// usual Nest, TypeORM and jest names) and the example entities and services of docs-prelude.ts in scope.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, '.build', 'docs-check', 'blocks');
const documents = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

const commonImports = {
  '@nestjs/common': ['Body', 'Controller', 'Get', 'Inject', 'Injectable', 'Module', 'Param', 'ParseIntPipe', 'Post', 'Put', 'BadRequestException', 'type INestApplication'],
  '@nestjs/core': ['APP_FILTER', 'NestFactory'],
  '@nestjs/schedule': ['Cron'],
  '@nestjs/testing': ['Test'],
  '@nestjs/typeorm': ['InjectRepository', 'TypeOrmModule'],
  '@jest/globals': ['afterAll', 'beforeAll', 'describe', 'expect', 'it'],
  typeorm: ['Column', 'DataSource', 'Entity', 'EntityManager', 'PrimaryGeneratedColumn', 'Repository'],
};

/** The fenced blocks of one markdown file (their language, attributes and code), with the line their code starts on. */
function blocksOf(document) {
  const lines = readFileSync(join(root, document), 'utf8').split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)```(\w+)(?:\s+(.*))?$/.exec(lines[i]);
    if (!open) continue;
    const indent = open[1];
    const end = lines.indexOf(`${indent}\`\`\``, i + 1);
    if (end < 0) throw new Error(`${document}:${i + 1}: a \`\`\`${open[2]} block that never closes`);
    const attributes = Object.fromEntries((open[3] ?? '').split(/\s+/).filter(Boolean).map((a) => a.split('=')));
    const code = lines.slice(i + 1, end).map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l)).join('\n');
    blocks.push({ document, line: i + 2, language: open[2], code, attributes });
    i = end;
  }
  return blocks;
}

/** Names a module exports (values and types), read from its declarations by the compiler. */
function exportsOf(program, file) {
  const checker = program.getTypeChecker();
  const symbol = checker.getSymbolAtLocation(program.getSourceFile(file));
  return checker.getExportsOfModule(symbol).map((s) => s.name);
}

/** Top-level names a fragment declares or imports itself: those are not imported for it. */
function declaredNames(code) {
  const names = new Set();
  for (const statement of ts.createSourceFile('x.ts', code, ts.ScriptTarget.ES2022).statements) {
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause;
      if (clause?.name) names.add(clause.name.text);
      if (clause?.namedBindings && ts.isNamedImports(clause.namedBindings)) clause.namedBindings.elements.forEach((e) => names.add(e.name.text));
    } else if (ts.isVariableStatement(statement)) {
      statement.declarationList.declarations.forEach((d) => ts.isIdentifier(d.name) && names.add(d.name.text));
    } else if (statement.name && ts.isIdentifier(statement.name)) {
      names.add(statement.name.text);
    }
  }
  return names;
}

const options = {
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2022.d.ts'],
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  strict: true,
  experimentalDecorators: true,
  emitDecoratorMetadata: true,
  useDefineForClassFields: false,
  esModuleInterop: true,
  skipLibCheck: true,
  noEmit: true,
  types: ['node'],
  paths: { 'nestjs-txlock': [join(root, 'lib/index.ts')], 'nestjs-txlock/testing': [join(root, 'lib/testing/index.ts')] },
};

const libraryProgram = ts.createProgram([join(root, 'lib/index.ts'), join(root, 'lib/testing/index.ts')], options);
const mainExports = exportsOf(libraryProgram, join(root, 'lib/index.ts'));
const importable = new Map([
  ['nestjs-txlock', mainExports],
  // The testing kit re-exports the errors it throws; fragments import those from nestjs-txlock.
  ['nestjs-txlock/testing', exportsOf(libraryProgram, join(root, 'lib/testing/index.ts')).filter((n) => !mainExports.includes(n))],
  ...Object.entries(commonImports),
  ['../docs-prelude.js', exportsOf(ts.createProgram([join(root, '.ci/docs-prelude.ts')], options), join(root, '.ci/docs-prelude.ts'))],
]);

function importsFor(code) {
  const own = declaredNames(code);
  const lines = [];
  for (const [from, names] of importable) {
    const wanted = names.filter((n) => !own.has(n.replace(/^type /, '')));
    if (wanted.length) lines.push(`import { ${wanted.join(', ')} } from '${from}';`);
  }
  if (!own.has('request')) lines.push(`import request from 'supertest';`);
  return lines.join('\n');
}

/** The source file a block becomes, and how many lines precede the block's code in it. */
function sourceOf(block) {
  if (!('fragment' in block.attributes)) return { header: '', footer: '' };
  const kind = block.attributes.fragment ?? '';
  const imports = importsFor(kind === 'module' ? block.code : '');
  if (kind === 'module') return { header: `${imports}\n`, footer: '' };
  if (kind === 'class') {
    const base = /^\s*constructor\(/m.test(block.code) ? '' : ' extends ExampleBase';
    return { header: `${imports}\nexport class Example${base} {\n`, footer: '\n}' };
  }
  if (kind === '') return { header: `${imports}\nexport class Example extends ExampleBase {\nasync example(): Promise<unknown> {\n`, footer: '\nreturn undefined;\n}\n}' };
  throw new Error(`${block.document}:${block.line - 1}: unknown fragment kind "${kind}"`);
}

const files = new Map();
const origins = new Map();
let failures = 0;
for (const document of documents) {
  for (const block of blocksOf(document)) {
    const expected = block.attributes.file;
    if (expected && readFileSync(join(root, expected), 'utf8').trimEnd() !== block.code.trimEnd()) {
      console.error(`${document}:${block.line - 1}: this block must be ${expected} as it is; copy the file into the block`);
      failures++;
    }
    if (block.language !== 'ts') continue;
    const { header, footer } = sourceOf(block);
    const extension = block.attributes.module === 'commonjs' ? 'cts' : 'ts';
    const name = join(outDir, `${document.replace(/[/.]/g, '_')}_${block.line}.${extension}`);
    files.set(name, header + block.code + footer);
    origins.set(name, { block, headerLines: header.split('\n').length - 1 });
  }
}

// Written out (and kept) so a failure can be read in context: .build/docs-check/blocks/<document>_<line>.ts.
rmSync(join(outDir, '..'), { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
copyFileSync(join(root, '.ci/docs-prelude.ts'), join(outDir, '..', 'docs-prelude.ts'));
// The app module a test file imports as `../src/app.module.js`.
mkdirSync(join(outDir, '..', 'src'), { recursive: true });
writeFileSync(join(outDir, '..', 'src', 'app.module.ts'), "export { AppModule } from '../docs-prelude.js';\n");
for (const [name, text] of files) writeFileSync(name, text);

const program = ts.createProgram([...files.keys()], options);
for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
  const origin = diagnostic.file && origins.get(diagnostic.file.fileName);
  const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
  if (!origin) {
    console.error(`${diagnostic.file ? relative(root, diagnostic.file.fileName) : ''}: ${message}`);
  } else {
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
    console.error(`${origin.block.document}:${origin.block.line + line - origin.headerLines}: TS${diagnostic.code}: ${message}`);
  }
  failures++;
}
// Links must lead somewhere, from the repository and from the installed package alike: these documents ship in the
// tarball (package.json "files"), so a relative link may only point at a file the tarball has (docs/, README.md,
// CHANGELOG.md, LICENSE, package.json); anything else of the repository (sample/, test/, fixtures/, bench/...) is linked by its
// absolute GitHub address, whose path must exist here. docs/api/ is built (npm run docs:api, before this in CI).
const { repository } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const repositoryUrl = repository.url.replace(/^git\+/, '').replace(/\.git$/, '');
const shipped = (path) => ['README.md', 'LICENSE', 'CHANGELOG.md', 'package.json'].includes(path) || path === 'docs' || path.startsWith('docs/');
for (const document of documents) {
  const text = readFileSync(join(root, document), 'utf8');
  for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    if (target.startsWith('#')) continue;
    let path;
    if (target.startsWith(`${repositoryUrl}/`)) {
      const match = /^(?:blob|tree)\/main\/([^#]*)/.exec(target.slice(repositoryUrl.length + 1));
      if (!match) continue; // issues, releases...
      path = match[1].replace(/\/$/, '');
    } else if (/^[a-z]+:/.test(target)) {
      continue;
    } else {
      path = relative(root, join(root, dirname(document), target.split('#')[0]));
      if (!shipped(path)) {
        console.error(`${document}: the link to ${target} is not in the package: link ${repositoryUrl}/blob/main/${path} (or tree/main/ for a folder)`);
        failures++;
        continue;
      }
      if (path.startsWith('docs/api') && !existsSync(join(root, 'docs/api'))) continue; // not built here
    }
    if (!existsSync(join(root, path))) {
      console.error(`${document}: the link to ${target} leads nowhere`);
      failures++;
    }
  }
}

const blocks = files.size;
if (failures) {
  console.error(`docs check: ${failures} problem(s) in ${blocks} TypeScript blocks`);
  process.exit(1);
}
console.log(`docs check: ${blocks} TypeScript blocks of ${documents.length} documents compile against the library`);
