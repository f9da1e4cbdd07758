import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const LIB = resolve('lib');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

// Every relative import and re-export of each file of lib/, type-only ones included: a circle of types is still a circle
// for a reader who follows the imports.
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(LIB)) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, false);
    graph.set(
      file,
      importedFiles.filter(({ fileName }) => fileName.startsWith('.')).map(({ fileName }) => resolve(dirname(file), fileName).replace(/\.js$/, '.ts')),
    );
  }
  return graph;
}

// The strongly connected components of more than one file (Tarjan's algorithm): each is an import circle.
function circles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (file: string): void => {
    index.set(file, index.size);
    low.set(file, index.get(file)!);
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(file, Math.min(low.get(file)!, low.get(next)!));
      } else if (stack.includes(next)) {
        low.set(file, Math.min(low.get(file)!, index.get(next)!));
      }
    }
    if (low.get(file) !== index.get(file)) return;
    const component = stack.splice(stack.indexOf(file));
    if (component.length > 1) found.push(component.map((member) => relative(LIB, member)).sort());
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  return found;
}

describe("lib/'s imports", () => {
  it('form no circle, type-only imports included', () => {
    const graph = importGraph();
    expect(graph.size).toBeGreaterThan(50);
    expect(circles(graph)).toEqual([]);
  });

  it('find a circle when there is one (the check itself)', () => {
    const graph = new Map([
      [join(LIB, 'a.ts'), [join(LIB, 'b.ts')]],
      [join(LIB, 'b.ts'), [join(LIB, 'c.ts')]],
      [join(LIB, 'c.ts'), [join(LIB, 'a.ts')]],
      [join(LIB, 'd.ts'), [join(LIB, 'a.ts')]],
    ]);
    expect(circles(graph)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
  });
});
