/**
 * The testing kit's differential oracle (docs/model-checker.md, "The testing kit's differential oracle").
 *
 * A program a single test could run (one request, no kills, the default DataSource) runs twice on the same seeded
 * tables: once as production runs it, once inside a test transaction of nestjs-txlock/testing (beginTestTransaction,
 * the program, rollback). What the two give must match, except where docs/testing.md lists a difference
 * ("Where a test differs from production"): each of those is a named rule below (kit-oracle-rules.ts) that says
 * which outcomes it allows and why. Checked:
 *  - each operation's result (the value, or the error's class and SQLSTATE);
 *  - the rows the program sees: read through the kit's connection before the rollback, against what production committed;
 *  - after the rollback, the tables are exactly what they were before (a dump), and nothing is left behind.
 * Programs with un-awaited work (`spawn`) run a third time with that work held back until the test has ended: the
 * late work must be refused with TransactionEndedError, whether it comes between two tests or during the next test,
 * which must not see it; nothing of it commits.
 */
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import type { Lib } from './app.js';
import { createAppUnderTest, type AppUnderTest, type DataSourceUnderTest } from './app.js';
import { compareRuns, lateWorkProblems, type Comparison } from './kit-oracle-rules.js';
import { errorName, type Observation } from './observation.js';
import { onDataSource, walk, type Program } from './program.js';
import { ProgramRunner } from './runner.js';
import { MODEL_ERRORS } from './world.js';

/** nestjs-txlock/testing, as the oracle uses it. */
export type Testing = typeof import('../../lib/testing/index.js');

/** Loads the testing kit of the library under test: this checkout's, or with `--lib DIR` `DIR/dist/testing/index.js`. */
export async function loadTesting(dir: string | undefined): Promise<Testing> {
  if (!dir) return (await import('../../lib/testing/index.js')) as Testing;
  return (await import(pathToFileURL(`${dir.replace(/\/$/, '')}/dist/testing/index.js`).href)) as Testing;
}

/**
 * The apps the oracle runs programs on, in turn: the default registration; `joinDataSource: false` (the kit must
 * still roll back what the app's repositories write outside its transactions); and `timeouts`, where a `bad` insert
 * (and every third insert) first runs a 200 ms statement in a `REQUIRES_NEW` transaction with `timeoutMs: 20`
 * (production refuses it with TransactionTimeoutError; the kit must too).
 */
export type Variant = 'default' | 'join-off' | 'timeouts';
export const VARIANTS: readonly Variant[] = ['default', 'join-off', 'timeouts'];

/** The probe's transaction timeout and statement (variant `timeouts`). */
const PROBE_TIMEOUT_MS = 20;
const PROBE_SQL = 'SELECT pg_sleep(0.2)';

/**
 * The part of `program` one test runs: its first request, when it uses the default DataSource only and kills no
 * backend; undefined otherwise.
 */
export function asTestProgram(program: Program): Program | undefined {
  const request = program.requests[0];
  if (!request) return undefined;
  for (const op of walk(request)) if (op.k === 'kill' || ('ds' in op && op.ds !== 'main')) return undefined;
  return { requests: [request] };
}

/** True when the program starts un-awaited work (checked again with that work coming after the test). */
export const hasSpawn = (program: Program): boolean => program.requests.some((request) => [...walk(request)].some((op) => op.k === 'spawn'));

const RAW_ERRORS = ['DatabaseError', 'QueryRunnerAlreadyReleasedError', 'QueryRunnerProviderAlreadyReleasedError', 'TypeORMError', 'Error', 'TypeError'];

/** An outcome production may give: a value, an error the model has (world.ts), or the `timeouts` probe's TransactionTimeoutError. */
function knownOutcome(result: string, variant: Variant): boolean {
  const outcome = result.replace(/^caught:/, '');
  if (outcome.startsWith('ok') || (MODEL_ERRORS as readonly string[]).includes(outcome)) return true;
  if (variant === 'timeouts' && outcome === 'TransactionTimeoutError') return true;
  // The library's own errors are outcomes (WeakerIsolationError...); raw driver and TypeORM errors never are.
  return !outcome.startsWith('QueryFailedError') && !RAW_ERRORS.includes(outcome) && !outcome.startsWith('non-error');
}

/** What the oracle found for one program. */
export interface OracleCheck {
  ok: boolean;
  variant: Variant;
  /** Why not, one line per difference. */
  differences: string[];
  production: Observation;
  kit: Observation;
  comparison: Comparison;
  /** Not run under the kit: production itself hung or left something behind (the model checker reports that). */
  productionFailed?: string;
  /** The late-work run's observation, when the program has un-awaited work. */
  late?: Observation;
  ms: number;
}

/** How each run goes: as production, inside a test transaction, or inside one with un-awaited work held back past its end. */
type Mode = 'production' | 'kit' | 'late';

/** The program runner, with the oracle's hooks: the rows read through the kit's connection, late work held back. */
class KitRunner extends ProgramRunner {
  mode: Mode = 'production';
  // A program a single test runs takes well under a second; a hang costs this much of the oracle's share of CI.
  protected override watchdogMs = 5_000;
  private release: () => void = () => undefined;
  private gate: Promise<void> = Promise.resolve();
  /** Un-awaited work held back (mode `late`). */
  held: Promise<void>[] = [];

  holdSpawns(): void {
    this.held = [];
    this.gate = new Promise((resolve) => (this.release = resolve));
  }

  releaseSpawns(): Promise<void> {
    this.release();
    return Promise.all(this.held).then(() => undefined);
  }

  protected override startSpawned(work: () => Promise<void>): Promise<void> {
    if (this.mode !== 'late') return work();
    // The spawn's context (its test's) is kept by the continuation: the work starts there once its test has ended.
    this.held.push(this.gate.then(work).catch(() => undefined));
    return Promise.resolve();
  }

  // Under the kit: what the program sees, through the kit's connection (the library's manager outside the app's
  // transactions is the test's transaction), before the rollback.
  protected override async snapshot(): Promise<Pick<Observation, 'rows' | 'counters' | 'goc'>> {
    if (this.mode === 'production') return super.snapshot();
    // After a hang the watchdog has ended the test's connection: nothing to read (the hang is the difference).
    return seen(this.main).catch((error: unknown) => ({ rows: [`(could not read: ${errorName(error)})`], counters: {}, goc: {} }));
  }

  // Under the kit the test's connection is checked out and idle in transaction until the rollback: checked after it.
  protected override async leaks(): Promise<string[]> {
    return this.mode === 'production' ? super.leaks() : [];
  }

  leftBehind(): Promise<string[]> {
    return super.leaks();
  }

  get main(): DataSourceUnderTest {
    return this.app.dataSources.main!;
  }
}

/** The rows, counters and get-or-create keys as `main` sees them from the caller's scope (the runner's snapshot shape). */
async function seen(ds: DataSourceUnderTest): Promise<Pick<Observation, 'rows' | 'counters' | 'goc'>> {
  const manager = ds.host.manager;
  const rows = ((await manager.query('SELECT label FROM model_item')) as { label: string }[]).map((row) => onDataSource('main', row.label)).sort();
  const counters: Record<string, number> = {};
  for (const row of (await manager.query('SELECT key, value::text AS value FROM txlock_counters')) as { key: string; value: string }[]) counters[onDataSource('main', row.key)] = Number(row.value);
  const goc: Record<string, number> = {};
  for (const row of (await manager.query('SELECT key, count(*)::int AS n FROM model_goc GROUP BY key')) as { key: string; n: number }[]) goc[onDataSource('main', row.key)] = row.n;
  return { rows, counters, goc };
}

/** The program's tables, every column, ordered: what "the database is what it was before" compares. */
const DUMP_SQL = ['model_item', 'model_goc', 'txlock_counters'].map((table) => `SELECT '${table}' AS t, coalesce(json_agg(x ORDER BY x::text), '[]')::text AS rows FROM ${table} x`).join(' UNION ALL ');

async function dump(query: (sql: string) => Promise<unknown>): Promise<string> {
  const rows = (await query(DUMP_SQL)) as { t: string; rows: string }[];
  return rows.map((row) => `${row.t}: ${row.rows}`).join('\n');
}

/** Rows there before each program, so that "what it was before" is not just empty (the programs' keys meet them). */
const SEED_SQL = [
  `INSERT INTO model_item (label, v) VALUES ('seed-a', 1), ('seed-b', 2)`,
  `INSERT INTO model_goc (key, v) VALUES ('g1', 7)`,
  `INSERT INTO txlock_counters (key, value) VALUES ('c1', 2)`,
];

/** Runs `fn` in an async context of its own, so that the test binding beginTestTransaction() gives stays inside it. */
function inOwnContext<T>(fn: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => setImmediate(() => fn().then(resolve, reject)));
}

/** A database of its own and the apps of each variant on it. */
export class KitOracle {
  private lateTurn = 0;

  private constructor(
    private readonly adminUrl: string,
    private readonly database: { name: string; url: string; admin: pg.Pool },
    private readonly runners: Record<Variant, KitRunner>,
    private readonly apps: AppUnderTest[],
    private readonly testing: Testing,
  ) {}

  get databaseName(): string {
    return this.database.name;
  }

  static async open(lib: Lib, testing: Testing, adminUrl: string): Promise<KitOracle> {
    const name = `txlock_oracle_${Math.random().toString(16).slice(2, 10)}`;
    const server = new pg.Client({ connectionString: adminUrl });
    await server.connect();
    await server.query(`CREATE DATABASE "${name}"`);
    await server.end();
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    const admin = new pg.Pool({ connectionString: url.toString(), max: 2, application_name: 'model-checker-admin' });
    admin.on('error', () => undefined);
    const database = { name, url: url.toString(), admin };
    const apps: AppUnderTest[] = [];
    const runners = {} as Record<Variant, KitRunner>;
    for (const variant of VARIANTS) {
      const app = await createAppUnderTest(lib, { main: database.url }, variant === 'join-off' ? { joinDataSource: false } : {});
      if (variant === 'timeouts') withTimeoutProbe(app, lib);
      apps.push(app);
      runners[variant] = new KitRunner(app, { main: database });
    }
    return new KitOracle(adminUrl, database, runners, apps, testing);
  }

  private async prepare(runner: KitRunner): Promise<string> {
    await runner.reset();
    for (const sql of SEED_SQL) await this.database.admin.query(sql);
    return dump((sql) => this.database.admin.query(sql).then((result) => result.rows));
  }

  /** Runs `program` (asTestProgram's) as production and under the kit on `variant`'s app, and compares. */
  async check(program: Program, variant: Variant): Promise<OracleCheck> {
    const started = Date.now();
    const runner = this.runners[variant];
    const differences: string[] = [];

    await this.prepare(runner);
    runner.mode = 'production';
    const production = await runner.run(program);
    const foreign = Object.entries(production.results).filter(([, result]) => !knownOutcome(result, variant));
    if (production.hung || production.leaks.length > 0 || production.overlaps.length > 0 || foreign.length > 0) {
      // The model checker's business, not the kit's (its campaigns report it): nothing sound to compare the kit with.
      const problem = [...production.leaks, ...production.overlaps, ...foreign.map(([key, result]) => `${key} gave ${result}, an error the model never gives`)].join('; ');
      return { ok: true, variant, differences, production, kit: production, comparison: compareRuns(program, variant, production, production), productionFailed: problem, ms: Date.now() - started };
    }

    const before = await this.prepare(runner);
    const kit = await inOwnContext(() => this.underTest(runner, 'kit', program, differences));
    const comparison = compareRuns(program, variant, production, kit.observed);
    differences.push(...comparison.differences);
    await this.afterTest(runner, before, differences, 'after the test');

    let late: Observation | undefined;
    if (hasSpawn(program)) {
      const lateBefore = await this.prepare(runner);
      // Late work comes between two tests (autocommit there would commit it for good) or during the next one (whose
      // transaction it must not join), in turn.
      const during = this.lateTurn++ % 2 === 1;
      late = await inOwnContext(async () => {
        runner.holdSpawns();
        const first = await this.underTest(runner, 'late', program, differences);
        if (!during) await this.settleLate(runner, differences);
        const next = await this.testing.beginTestTransaction(appOf(this.apps, runner));
        try {
          if (during) await this.settleLate(runner, differences);
          const seenByNext = await dump((sql) => runner.main.host.manager.query(sql));
          if (seenByNext !== lateBefore) differences.push(`late work: the next test sees tables other than before the first test:\n${seenByNext}\n(before: ${lateBefore})`);
        } finally {
          await next.rollback().catch((error: unknown) => differences.push(`late work: the next test's rollback threw ${errorName(error)}`));
        }
        return first.observed;
      });
      differences.push(...lateWorkProblems(program, late, production).map((problem) => `late work (${during ? 'during the next test' : 'between two tests'}): ${problem}`));
      await this.afterTest(runner, lateBefore, differences, 'after both tests');
    }
    runner.mode = 'production';
    return { ok: differences.length === 0, variant, differences, production, kit: kit.observed, comparison, late, ms: Date.now() - started };
  }

  // One test: begin, the program (everything it starts awaited, except late work), rollback.
  private async underTest(runner: KitRunner, mode: Mode, program: Program, differences: string[]): Promise<{ observed: Observation }> {
    const app = appOf(this.apps, runner);
    const test = await this.testing.beginTestTransaction(app);
    runner.mode = mode;
    let observed: Observation;
    try {
      observed = await runner.run(program);
    } finally {
      runner.mode = 'production';
      await test.rollback().catch((error: unknown) => differences.push(`the test's rollback threw ${errorName(error)}: ${(error as Error).message?.slice(0, 120)}`));
    }
    if (observed.hung) differences.push('the program did not finish under the kit (production did)');
    if (observed.overlaps.length > 0) differences.push(`lock overlaps under the kit: ${observed.overlaps.join('; ')}`);
    return { observed };
  }

  private async settleLate(runner: KitRunner, differences: string[]): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([runner.releaseSpawns().then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 10_000)))]);
    clearTimeout(timer);
    if (!done) differences.push('late work did not finish within 10 s');
  }

  // After a test: the tables as before, nothing checked out, no transaction left open, no advisory lock held.
  private async afterTest(runner: KitRunner, before: string, differences: string[], when: string): Promise<void> {
    const after = await dump((sql) => this.database.admin.query(sql).then((result) => result.rows));
    if (after !== before) differences.push(`${when}, the tables are not what they were before:\n${after}\n(before:\n${before})`);
    const left = await runner.leftBehind();
    if (left.length > 0) differences.push(`${when}, left behind: ${left.join('; ')}`);
  }

  async close(): Promise<void> {
    for (const app of this.apps) await app.close().catch(() => undefined);
    await this.database.admin.end().catch(() => undefined);
    const server = new pg.Client({ connectionString: this.adminUrl });
    await server.connect();
    await server.query(`DROP DATABASE IF EXISTS "${this.database.name}" WITH (FORCE)`);
    await server.end();
  }
}

function appOf(apps: AppUnderTest[], runner: KitRunner): AppUnderTest['app'] {
  return apps.find((app) => app.dataSources.main === runner.main)!.app;
}

/**
 * Variant `timeouts`: a `bad` insert (v < 0), and an insert whose operation id is a multiple of 3, first runs a statement longer than its transaction's `timeoutMs`, in a
 * transaction of its own (REQUIRES_NEW), so the operation fails with TransactionTimeoutError in production wherever it
 * is; the statement's own transaction keeps the short timeout away from every other statement.
 */
function withTimeoutProbe(app: AppUnderTest, lib: Lib): void {
  const ds = app.dataSources.main!;
  const items = ds.items;
  const host = ds.host;
  const probed = Object.create(items) as typeof items;
  probed.insert = (async (values: { label?: string; v?: number }) => {
    if ((values.v !== undefined && values.v < 0) || Number(values.label?.slice(1)) % 3 === 0) {
      await host.run({ propagation: lib.Propagation.REQUIRES_NEW, timeoutMs: PROBE_TIMEOUT_MS }, () => host.manager.query(PROBE_SQL));
    }
    return items.insert(values as never);
  }) as typeof items.insert;
  ds.items = probed;
}
