/**
 * The programs the checker generates, runs and models: plain data, so they can be printed, shrunk and replayed.
 * A program is a few concurrent requests (each one an async call with no transaction around it, like an HTTP
 * request), each a block of operations run one after the other.
 */

/**
 * The DataSources a program can use: the default one (`main`) and a named one (`analytics`, on a database of its
 * own), each with its own TxLockModule registration. A build without several-DataSource support gets `main` only.
 */
export type DataSourceName = 'main' | 'analytics';

export type Propagation = 'REQUIRED' | 'REQUIRES_NEW' | 'NESTED' | 'SUPPORTS' | 'NOT_SUPPORTED' | 'MANDATORY' | 'NEVER';
export type Isolation = 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE';
export type LockPropagation = 'REQUIRED' | 'REQUIRES_NEW' | 'NESTED' | 'MANDATORY';

/** One operation; `id` is unique in the program (results, rows and labels are keyed by it). */
export type Op =
  /** `TransactionHost.run(options, body)` (`host`) or a method under `@Transactional(options)` (`decorator`). */
  | { k: 'tx'; id: number; ds: DataSourceName; via: 'host' | 'decorator'; propagation?: Propagation; isolation?: Isolation; readOnly?: boolean; body: Op[] }
  /** An insert of row `i<id>` through a transaction-aware repository. */
  | { k: 'insert'; id: number; ds: DataSourceName }
  /** An insert that the table's CHECK constraint refuses: a statement that fails in PostgreSQL (SQLSTATE 23514). */
  | { k: 'bad'; id: number; ds: DataSourceName }
  /** `throw new ProgramError()`. */
  | { k: 'throw'; id: number }
  /** `try { body } catch {}`. */
  | { k: 'catch'; id: number; body: Op[] }
  /** `Promise.all(branches)` (an early rejection leaves the other branches running), or `Promise.allSettled`. */
  | { k: 'all'; id: number; settle: boolean; branches: Op[][] }
  /** Starts `body` and does not await it (fire-and-forget); the runner awaits it only after the program. */
  | { k: 'spawn'; id: number; body: Op[] }
  /**
   * `LockService.withAdvisoryLock(key, body, options)`; the body is one visit of the overlap detector. `abort`: with
   * a `signal` that aborts a moment after the call (a caller that gives up while it may still be waiting).
   */
  | {
      k: 'lock';
      id: number;
      ds: DataSourceName;
      key: number;
      scope: 'transaction' | 'session';
      propagation?: LockPropagation;
      nowait?: boolean;
      shared?: boolean;
      abort?: boolean;
      body: Op[];
    }
  /**
   * TypeORM's own manual transaction inside the caller's transaction: `qr = dataSource.createQueryRunner()`,
   * `qr.startTransaction(isolation)`, the body's inserts through `qr.manager`, then `commitTransaction()` or
   * `rollbackTransaction()` (and `rollbackTransaction()` in a catch when the body fails), `release()`. The body
   * holds only `insert`, `bad` and `pause` operations (the generator keeps it so).
   */
  | { k: 'manual'; id: number; ds: DataSourceName; isolation?: Isolation; end: 'commit' | 'rollback'; body: Op[] }
  /** `dataSource.transaction(isolation, fn)` inside the caller's transaction (the generator places it in one). */
  | { k: 'dstx'; id: number; ds: DataSourceName; isolation?: Isolation; body: Op[] }
  /** `dataSource.createQueryRunner().commitTransaction()` (or rollback) without startTransaction(): a stray end. */
  | { k: 'stray'; id: number; ds: DataSourceName; end: 'commit' | 'rollback' }
  /** `CounterService.increment(key, by)`, or `tryIncrement(key, by, { max })`. */
  | { k: 'counter'; id: number; ds: DataSourceName; key: number; by: number; max?: number }
  /** `AtomicService.getOrCreate(Goc, { key })`, or `updateOrCreate(Goc, { key }, { v })`. */
  | { k: 'goc'; id: number; ds: DataSourceName; key: number; update: boolean }
  /** Lets other work run: a few microtask ticks, a setImmediate, or a 1 ms timer. */
  | { k: 'pause'; id: number; how: 'tick' | 'immediate' | 'timer' }
  /** `pg_terminate_backend` of the current transaction's connection (slow mode only). */
  | { k: 'kill'; id: number; ds: DataSourceName };

/** Concurrent requests, each a sequential block. */
export interface Program {
  requests: Op[][];
}

/** The result key of an operation, and of a whole request. */
export const opKey = (id: number): string => `op${id}`;
export const requestKey = (index: number): string => `req${index}`;

/** Row label of an insert (and of a refused one), counter key, get-or-create key and lock key as used in the database. */
export const rowLabel = (id: number): string => `i${id}`;
/** How rows, counters and get-or-create keys of a DataSource are named in observations (`analytics:c0`). */
export const onDataSource = (ds: DataSourceName, name: string): string => `${ds}:${name}`;
export const counterKey = (key: number): string => `c${key}`;
export const gocKey = (key: number): string => `g${key}`;
export const lockKey = (key: number): string => `model-lock-${key}`;

/** Every operation of a block, depth first. */
export function* walk(block: readonly Op[]): Generator<Op> {
  for (const op of block) {
    yield op;
    for (const child of children(op)) yield* walk(child);
  }
}

/** The blocks directly inside `op`. */
export function children(op: Op): Op[][] {
  switch (op.k) {
    case 'tx':
    case 'catch':
    case 'spawn':
    case 'lock':
    case 'manual':
    case 'dstx':
      return [op.body];
    case 'all':
      return op.branches;
    default:
      return [];
  }
}

/** A copy of `op` with its blocks replaced (same order as children()). */
export function withChildren(op: Op, blocks: Op[][]): Op {
  switch (op.k) {
    case 'tx':
    case 'catch':
    case 'spawn':
    case 'lock':
    case 'manual':
    case 'dstx':
      return { ...op, body: blocks[0]! };
    case 'all':
      return { ...op, branches: blocks };
    default:
      return op;
  }
}

/** Number of operations in the program (its size, for reports). */
export function size(program: Program): number {
  let n = 0;
  for (const request of program.requests) for (const _ of walk(request)) n++;
  return n;
}

/** The program with ids renumbered 1, 2, 3... depth first, so printed programs read in order. */
export function renumber(program: Program): Program {
  let next = 1;
  const block = (ops: Op[]): Op[] =>
    ops.map((op) => {
      const id = next++;
      return withChildren({ ...op, id }, children(op).map(block));
    });
  return { requests: program.requests.map(block) };
}
