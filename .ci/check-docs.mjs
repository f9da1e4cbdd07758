// Compiles every ```ts block of README.md and docs/*.md against the library's sources, so an example that no
// longer matches the API fails CI, and checks that their links to other files lead somewhere. A block's info string says what it is:
//   ```ts                      a complete module, imports included
//   ```ts file=<path>          a complete module that must also be that file, character for character
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

/** The ```ts blocks of one markdown file, with the line their code starts on. */
function blocksOf(document) {
  const lines = readFileSync(join(root, document), 'utf8').split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)```ts(?:\s+(.*))?$/.exec(lines[i]);
    if (!open) continue;
    const indent = open[1];
    const end = lines.indexOf(`${indent}\`\`\``, i + 1);
    if (end < 0) throw new Error(`${document}:${i + 1}: a \`\`\`ts block that never closes`);
    const attributes = Object.fromEntries((open[2] ?? '').split(/\s+/).filter(Boolean).map((a) => a.split('=')));
    const code = lines.slice(i + 1, end).map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l)).join('\n');
    blocks.push({ document, line: i + 2, code, attributes });
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
const importable = new Map([
  ['nestjs-txlock', exportsOf(libraryProgram, join(root, 'lib/index.ts'))],
  ['nestjs-txlock/testing', exportsOf(libraryProgram, join(root, 'lib/testing/index.ts')).filter((n) => n !== 'UnfinishedTestWorkError')],
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
    const { header, footer } = sourceOf(block);
    const name = join(outDir, `${document.replace(/[/.]/g, '_')}_${block.line}.ts`);
    files.set(name, header + block.code + footer);
    origins.set(name, { block, headerLines: header.split('\n').length - 1 });
    const expected = block.attributes.file;
    if (expected && readFileSync(join(root, expected), 'utf8').trimEnd() !== block.code.trimEnd()) {
      console.error(`${document}:${block.line - 1}: this block must be ${expected} as it is; copy the file into the block`);
      failures++;
    }
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
// Links between the documents and to the repository's files must lead somewhere.
for (const document of documents) {
  const text = readFileSync(join(root, document), 'utf8');
  for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^[a-z]+:/.test(target) || target.startsWith('#')) continue;
    if (!existsSync(join(root, dirname(document), target.split('#')[0]))) {
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
