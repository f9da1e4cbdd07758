/**
 * Shrinks a diverging program to a small one that still diverges the same way: greedy, structure-aware steps
 * (drop a request, drop an operation, put a block in place of the operation around it, drop an option), each
 * candidate run a few times on the real database since a race may need several tries to show again. Faster than
 * fast-check's generic shrinking when every check costs a real run and a model search.
 */
import { discipline, type GeneratorOptions } from './generator.js';
import { children, withChildren, type Op, type Program } from './program.js';

/** Every program one step smaller than `program`, most promising first. */
export function* smaller(program: Program): Generator<Program> {
  const { requests } = program;
  for (let i = 0; i < requests.length && requests.length > 1; i++) yield { requests: requests.filter((_, j) => j !== i) };
  for (let i = 0; i < requests.length; i++) {
    for (const block of smallerBlocks(requests[i]!)) yield { requests: requests.map((r, j) => (j === i ? block : r)) };
  }
}

function* smallerBlocks(block: Op[]): Generator<Op[]> {
  for (let i = 0; i < block.length; i++) {
    const op = block[i]!;
    const at = (replacement: Op[]) => [...block.slice(0, i), ...replacement, ...block.slice(i + 1)];
    yield at([]);
    // The operation's own work in its place (without the transaction, lock, catch or spawn around it).
    for (const inner of children(op)) yield at(inner);
    for (const simpler of simplerOps(op)) yield at([simpler]);
    const blocks = children(op);
    for (let b = 0; b < blocks.length; b++) {
      for (const smallerChild of smallerBlocks(blocks[b]!)) yield at([withChildren(op, blocks.map((x, k) => (k === b ? smallerChild : x)))]);
    }
    if (op.k === 'all' && op.branches.length > 2) {
      for (let b = 0; b < op.branches.length; b++) yield at([{ ...op, branches: op.branches.filter((_, k) => k !== b) }]);
    }
  }
}

// The same operation with one option fewer.
function* simplerOps(op: Op): Generator<Op> {
  const without = (key: string) => {
    const copy = { ...op } as Record<string, unknown>;
    delete copy[key];
    return copy as Op;
  };
  for (const key of ['isolation', 'readOnly', 'propagation', 'nowait', 'shared', 'max'] as const) if (key in op) yield without(key);
  if (op.k === 'lock' && op.scope === 'session') yield { ...op, scope: 'transaction' };
  if ('ds' in op && op.ds !== 'main') yield { ...op, ds: 'main' } as Op;
}

/**
 * The smallest program reachable by single steps from `program` for which `fails` still answers (within
 * `ms`); `fails` runs a candidate (several times if it likes) and returns how it diverged, or undefined.
 */
export async function shrink<T>(
  program: Program,
  failure: T,
  fails: (candidate: Program) => Promise<T | undefined>,
  options: GeneratorOptions,
  ms: number,
): Promise<{ program: Program; failure: T; steps: number; tried: number }> {
  const deadline = Date.now() + ms;
  let current = program;
  let found = failure;
  let steps = 0;
  let tried = 0;
  const seen = new Set<string>([JSON.stringify(current)]);
  for (let progress = true; progress && Date.now() < deadline; ) {
    progress = false;
    for (const raw of smaller(current)) {
      if (Date.now() >= deadline) break;
      const candidate = discipline(raw, options);
      const key = JSON.stringify(candidate);
      if (seen.has(key)) continue;
      seen.add(key);
      tried++;
      const result = await fails(candidate);
      if (result !== undefined) {
        current = candidate;
        found = result;
        steps++;
        progress = true;
        break;
      }
    }
  }
  return { program: current, failure: found, steps, tried };
}
