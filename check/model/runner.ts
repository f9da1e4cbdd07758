import pg from 'pg';
import type { AppUnderTest, DataSourceUnderTest } from './app.js';
import { decoratedName } from './app.js';
import type { EntityManager } from 'typeorm';
import { ModelGoc, ModelItem } from './entities.js';
import { errorName, type Observation } from './observation.js';
import { counterKey, gocKey, lockKey, onDataSource, opKey, requestKey, rowLabel, type DataSourceName, type Op, type Program } from './program.js';

/** The error a `throw` operation throws. */
export class ProgramError extends Error {
  constructor(readonly opId: number) {
    super(`thrown by operation ${opId}`);
    this.name = 'ProgramError';
  }
}

/** One lock body's time in the critical section, on a process-wide sequence (enter/exit numbers). */
interface Visit {
  id: number;
  /** `<DataSource>:<key>`: advisory keys of different databases never exclude each other. */
  key: string;
  shared: boolean;
  chain: readonly number[];
  enter: number;
  exit?: number;
  /** The lock was provably still held when the body left (see lockBody). */
  held: boolean;
  note?: string;
}

interface RunContext {
  /** Visits of the lock calls this call chain is inside (re-entry by the chain may overlap them). */
  chain: readonly number[];
}

const WATCHDOG_MS = 30_000;
/** When an `abort` lock call's signal aborts: about when a contended call is still waiting. */
const ABORT_AFTER_MS = 3;
const ticks = async (n: number) => {
  for (let i = 0; i < n; i++) await null;
};

/**
 * Runs programs through the library on a real PostgreSQL, with real concurrency (the requests, Promise.all
 * branches and un-awaited calls all run at once), and reports what each left in the database.
 */
export class ProgramRunner {
  private sequence = 0;
  /** How long a program may run before it counts as hung (its backends are then terminated). */
  protected watchdogMs = WATCHDOG_MS;

  constructor(
    protected readonly app: AppUnderTest,
    /** Per DataSource: its database, and an admin pool on it (truncation, kills, the checks after a program). */
    private readonly databases: Partial<Record<DataSourceName, { name: string; admin: pg.Pool }>>,
  ) {}

  private ds(name: DataSourceName): DataSourceUnderTest {
    const ds = this.app.dataSources[name];
    if (!ds) throw new Error(`DataSource ${name} is not registered in the app under test`);
    return ds;
  }

  private get admin(): pg.Pool {
    return this.databases.main!.admin;
  }

  private eachDatabase(): [DataSourceName, { name: string; admin: pg.Pool }][] {
    return Object.entries(this.databases) as [DataSourceName, { name: string; admin: pg.Pool }][];
  }

  /** Empties the tables the programs write. */
  async reset(): Promise<void> {
    for (const [, db] of this.eachDatabase()) await db.admin.query('TRUNCATE model_item, model_goc, txlock_counters RESTART IDENTITY');
  }

  /** Runs `program` once and observes it; `reset()` must have run before. */
  async run(program: Program): Promise<Observation> {
    const started = Date.now();
    const results: Record<string, string> = {};
    const trace: string[] = [];
    const visits: Visit[] = [];
    const pending: Promise<unknown>[] = [];
    const record = (key: string, value: string) => {
      if (key in results) results[key] += `|${value}`; // never expected: each operation runs at most once
      else results[key] = value;
    };

    const exec = async (block: readonly Op[], ctx: RunContext): Promise<void> => {
      for (const op of block) await execOp(op, ctx);
    };

    // Records the settled outcome of an operation, and passes its error on.
    const settle = async (op: Op, work: () => Promise<string | void>): Promise<void> => {
      trace.push(`s${op.id}`);
      try {
        const outcome = await work();
        record(opKey(op.id), outcome ?? 'ok');
      } catch (error) {
        record(opKey(op.id), errorName(error));
        throw error;
      } finally {
        trace.push(`e${op.id}`);
      }
    };

    const lockBody = async (op: Extract<Op, { k: 'lock' }>, ctx: RunContext): Promise<void> => {
      const visit: Visit = { id: op.id, key: `${op.ds}:${op.key}`, shared: op.shared ?? false, chain: ctx.chain, enter: ++this.sequence, held: true };
      if (process.env.MODEL_DEBUG) visit.note = `pid ${this.pidOf(op.ds)} locks ${JSON.stringify((await this.admin.query(`SELECT pid, granted, mode FROM pg_locks WHERE locktype = 'advisory'`)).rows)}`;
      visits.push(visit);
      try {
        await exec(op.body, { chain: [...ctx.chain, op.id] });
      } finally {
        // A transaction-scope lock is held until its transaction (or the savepoint it was taken in) ends, or
        // PostgreSQL aborts it after a failed statement: an aborted transaction (or subtransaction) releases its
        // locks at once, though it waits for ROLLBACK. A statement in the body's own scope answers whether that
        // scope is still alive and well: if it is refused or fails, the lock may have been released while the
        // body ran (an un-awaited body outliving its transaction, a failed statement), and this visit proves
        // nothing either way.
        if (op.scope === 'transaction') visit.held = await this.probe(op.ds, visit);
        visit.exit = ++this.sequence;
        if (process.env.MODEL_DEBUG) visit.note += ` / at exit: ${JSON.stringify((await this.admin.query(`SELECT l.pid, l.granted, a.state, a.query FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory'`)).rows)}`;
      }
    };

    const execOp = async (op: Op, ctx: RunContext): Promise<void> => {
      switch (op.k) {
        case 'tx': {
          const ds = this.ds(op.ds);
          const body = () => exec(op.body, ctx);
          return settle(op, async () => {
            const options = { propagation: op.propagation, isolation: op.isolation, readOnly: op.readOnly };
            if (op.via === 'host') await ds.host.run(options, body);
            else await ds.decorated[decoratedName(op.propagation, op.isolation, op.readOnly, op.ds)]!(body);
          });
        }
        case 'insert':
          return settle(op, async () => {
            await this.ds(op.ds).items.insert({ label: rowLabel(op.id), v: 0 });
          });
        case 'bad':
          return settle(op, async () => {
            await this.ds(op.ds).items.insert({ label: rowLabel(op.id), v: -1 });
          });
        case 'throw':
          trace.push(`s${op.id}`, `e${op.id}`);
          throw new ProgramError(op.id);
        case 'catch':
          trace.push(`s${op.id}`);
          try {
            await exec(op.body, ctx);
            record(opKey(op.id), 'ok');
          } catch (error) {
            record(opKey(op.id), `caught:${errorName(error)}`);
          }
          trace.push(`e${op.id}`);
          return;
        case 'all':
          return settle(op, async () => {
            // Each branch's promise gets one consumer, the Promise.all: V8's async stack (which tells the library that
            // the branch is awaited, re-entry) ends at a promise with two. Its end is reported from inside instead.
            const branches = op.branches.map((branch) => {
              let ended!: () => void;
              pending.push(new Promise<void>((resolve) => (ended = resolve)));
              return (async () => {
                try {
                  return await exec(branch, ctx);
                } finally {
                  ended();
                }
              })();
            });
            if (op.settle) await Promise.allSettled(branches);
            else await Promise.all(branches);
          });
        case 'spawn': {
          trace.push(`s${op.id}`);
          // Detached work is no re-entry of the lock calls around it: its lock bodies must not overlap theirs.
          const spawned = this.startSpawned(() => exec(op.body, { chain: [] })).then(
            () => record(opKey(op.id), 'ok'),
            (error: unknown) => record(opKey(op.id), errorName(error)),
          );
          pending.push(spawned.finally(() => trace.push(`e${op.id}`)));
          return;
        }
        case 'lock': {
          const ds = this.ds(op.ds);
          const signal = op.abort ? AbortSignal.timeout(ABORT_AFTER_MS) : undefined;
          const options =
            op.scope === 'session'
              ? { scope: 'session' as const, nowait: op.nowait, shared: op.shared, signal }
              : { propagation: op.propagation, nowait: op.nowait, shared: op.shared, signal };
          return settle(op, async () => {
            await ds.locks.withAdvisoryLock(lockKey(op.key), () => lockBody(op, ctx), options);
          });
        }
        case 'manual': {
          const ds = this.ds(op.ds);
          return settle(op, async () => {
            const runner = ds.dataSource.createQueryRunner();
            try {
              await runner.startTransaction(op.isolation);
              let open = true;
              try {
                for (const inner of op.body) await manualOp(inner, runner.manager);
                open = false;
                if (op.end === 'commit') await runner.commitTransaction();
                else await runner.rollbackTransaction();
              } catch (error) {
                // TypeORM's documented pattern: roll back in the catch (open: not when the end itself failed).
                if (open) await runner.rollbackTransaction();
                throw error;
              }
            } finally {
              await runner.release();
            }
          });
        }
        case 'dstx': {
          const ds = this.ds(op.ds);
          const body = () => exec(op.body, ctx);
          return settle(op, async () => {
            if (op.isolation) await ds.dataSource.transaction(op.isolation, body);
            else await ds.dataSource.transaction(body);
          });
        }
        case 'stray': {
          const ds = this.ds(op.ds);
          return settle(op, async () => {
            const runner = ds.dataSource.createQueryRunner();
            try {
              if (op.end === 'commit') await runner.commitTransaction();
              else await runner.rollbackTransaction();
            } finally {
              await runner.release();
            }
          });
        }
        case 'counter': {
          const counters = this.ds(op.ds).counters;
          return settle(op, async () => {
            if (op.max === undefined) {
              await counters.increment(counterKey(op.key), op.by);
              return;
            }
            const outcome = await counters.tryIncrement(counterKey(op.key), op.by, { max: op.max });
            return outcome.applied ? 'ok' : 'ok:refused';
          });
        }
        case 'goc': {
          const atomic = this.ds(op.ds).atomic;
          return settle(op, async () => {
            const where = { key: gocKey(op.key) };
            const { created } = op.update ? await atomic.updateOrCreate(ModelGoc, where, { v: op.id }) : await atomic.getOrCreate(ModelGoc, where);
            return created ? 'ok:created' : 'ok:found';
          });
        }
        case 'pause':
          trace.push(`s${op.id}`);
          if (op.how === 'tick') await ticks(3);
          else if (op.how === 'immediate') await new Promise((resolve) => setImmediate(resolve));
          else await new Promise((resolve) => setTimeout(resolve, 1));
          trace.push(`e${op.id}`);
          return;
        case 'kill':
          trace.push(`s${op.id}`);
          await this.kill(op.ds);
          trace.push(`e${op.id}`);
          return;
      }
    };

    // The statements of a manual transaction's body, through its runner's manager.
    const manualOp = async (op: Op, manager: EntityManager): Promise<void> => {
      if (op.k === 'pause' || op.k === 'throw') return execOp(op, { chain: [] });
      if (op.k !== 'insert' && op.k !== 'bad') throw new Error(`operation ${op.k} in a manual transaction's body`);
      return settle(op, async () => {
        await manager.insert(ModelItem, { label: rowLabel(op.id), v: op.k === 'bad' ? -1 : 0 });
      });
    };

    const requests = program.requests.map((block, index) =>
      exec(block, { chain: [] }).then(
        () => record(requestKey(index), 'ok'),
        (error: unknown) => record(requestKey(index), errorName(error)),
      ),
    );
    const everything = (async () => {
      await Promise.all(requests);
      // Un-awaited work may start more un-awaited work: wait until nothing new was started.
      for (let seen = 0; seen < pending.length; ) {
        const batch = pending.slice(seen);
        seen = pending.length;
        await Promise.all(batch);
      }
    })();
    let timer: NodeJS.Timeout | undefined;
    const hung = await Promise.race([
      everything.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.watchdogMs))),
    ]);
    clearTimeout(timer);
    if (hung) {
      // Free whatever waits on the database, then give the program a moment to unwind.
      for (const [, db] of this.eachDatabase()) {
        await db.admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> 'model-checker-admin'`,
          [db.name],
        );
      }
      await Promise.race([everything, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    }
    const leaks = hung ? ['the program did not finish within the watchdog time'] : await this.leaks();
    const state = await this.snapshot();
    return { results, ...state, overlaps: overlaps(visits), leaks, hung, trace, ms: Date.now() - started };
  }

  /**
   * Starts the body of a `spawn` (un-awaited work). The testing kit's oracle (kit-oracle.ts) holds it back until its
   * test has ended, to check that late work is refused and commits nothing.
   */
  protected startSpawned(work: () => Promise<void>): Promise<void> {
    return work();
  }

  // SELECT 1 in the caller's current scope: true while the scope (and so any lock taken in it) is alive and not aborted.
  private async probe(ds: DataSourceName, visit?: Visit): Promise<boolean> {
    try {
      await this.ds(ds).host.manager.query('SELECT 1');
      return true;
    } catch (error) {
      if (process.env.MODEL_DEBUG && visit) visit.note += ` / probe: ${errorName(error)} ${(error as Error).message.slice(0, 100)}`;
      return false;
    }
  }

  private pidOf(ds: DataSourceName): number | undefined {
    return (this.ds(ds).host.queryRunner as unknown as { databaseConnection?: { processID?: number } } | undefined)?.databaseConnection?.processID;
  }

  // Terminates the backend of the caller's transaction and waits until it is gone.
  private async kill(ds: DataSourceName): Promise<void> {
    const host = this.ds(ds).host;
    if (!host.isActive) return;
    const pid = (host.queryRunner as unknown as { databaseConnection?: { processID?: number } } | undefined)?.databaseConnection?.processID;
    if (pid === undefined) return;
    await this.databases[ds]!.admin.query('SELECT pg_terminate_backend($1, 5000)', [pid]);
  }

  /** What the program left in the databases (names prefixed with their DataSource). */
  protected async snapshot(): Promise<Pick<Observation, 'rows' | 'counters' | 'goc'>> {
    const rows: string[] = [];
    const counters: Record<string, number> = {};
    const goc: Record<string, number> = {};
    for (const [ds, { admin }] of this.eachDatabase()) {
      for (const row of (await admin.query<{ label: string }>('SELECT label FROM model_item')).rows) rows.push(onDataSource(ds, row.label));
      for (const row of (await admin.query<{ key: string; value: string }>('SELECT key, value::text FROM txlock_counters')).rows) {
        counters[onDataSource(ds, row.key)] = Number(row.value);
      }
      for (const row of (await admin.query<{ key: string; n: number }>('SELECT key, count(*)::int AS n FROM model_goc GROUP BY key')).rows) {
        goc[onDataSource(ds, row.key)] = row.n;
      }
    }
    return { rows: rows.sort(), counters, goc };
  }

  /** Connections still checked out, transactions left open, advisory locks left held (polled briefly: releases are async). */
  protected async leaks(): Promise<string[]> {
    const deadline = Date.now() + 3_000;
    for (;;) {
      const found: string[] = [];
      for (const [ds, { name, admin }] of this.eachDatabase()) {
        const pool = this.ds(ds).pool;
        if (pool.totalCount !== pool.idleCount || pool.waitingCount > 0) {
          found.push(`${ds} pool: ${pool.totalCount} connections, ${pool.idleCount} idle, ${pool.waitingCount} waiting`);
        }
        const { rows: sessions } = await admin.query<{ state: string; query: string }>(
          `SELECT state, query FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()
             AND application_name <> 'model-checker-admin' AND state IS NOT NULL AND state <> 'idle'`,
          [name],
        );
        for (const session of sessions) found.push(`${ds} backend ${session.state}: ${session.query.slice(0, 80)}`);
        const { rows: locks } = await admin.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = $1`,
          [name],
        );
        if (locks[0]!.n > 0) found.push(`${ds}: ${locks[0]!.n} advisory lock(s) still held`);
      }
      if (found.length === 0 || Date.now() > deadline) return found;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

/** Pairs of visits on one key that overlapped while both held the lock, other than re-entry by the same chain. */
export function overlaps(visits: readonly Visit[]): string[] {
  const found: string[] = [];
  for (let i = 0; i < visits.length; i++) {
    for (let j = i + 1; j < visits.length; j++) {
      const a = visits[i]!;
      const b = visits[j]!;
      if (a.key !== b.key || !a.held || !b.held || (a.shared && b.shared)) continue;
      if (a.chain.includes(b.id) || b.chain.includes(a.id)) continue;
      if (a.enter < b.exit! && b.enter < a.exit!) {
        found.push(`lock bodies ${a.id} and ${b.id} on key ${a.key} overlapped${a.note ? ` (${a.id}: ${a.note}; ${b.id}: ${b.note})` : ''}`);
      }
    }
  }
  return found;
}
