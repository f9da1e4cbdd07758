/**
 * One checking session: a database of its own, the app under test on it, and the loop that runs a program,
 * checks what it left against the invariants (no lock overlap, nothing left behind) and asks the model to
 * explain the rest.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createAppUnderTest, supportsSeveralDataSources, type AppUnderTest, type Lib } from './app.js';
import { explain, type Verdict } from './explore.js';
import { coarse, type Observation } from './observation.js';
import type { DataSourceName, Program } from './program.js';
import { ProgramRunner } from './runner.js';

/** The outcome of one program: `ok` when it held every invariant and the model explains it. */
export interface Check {
  ok: boolean;
  /** The model's search ran out of budget before it found an explanation or proved there is none. */
  unknown: boolean;
  observed: Observation;
  verdict?: Verdict;
  /** Why it failed, in one line. */
  reason?: string;
  modelMs: number;
}

/** The model's search budget per program. */
export interface SearchBudget {
  schedules: number;
  ms: number;
}

/** How outcomes are compared: `exact` (error classes and SQLSTATEs) or `coarse` (ok or error). */
export type Outcomes = 'exact' | 'coarse';

interface Database {
  name: string;
  url: string;
  admin: pg.Pool;
}

export class CheckingSession {
  private constructor(
    private readonly adminUrl: string,
    private readonly databases: Partial<Record<DataSourceName, Database>>,
    private app: AppUnderTest,
    private runner: ProgramRunner,
    private readonly lib: Lib,
  ) {}

  /** The DataSources the app under test serves (`analytics` only when the build supports several). */
  get dataSources(): DataSourceName[] {
    return Object.keys(this.databases) as DataSourceName[];
  }

  get database(): string {
    return Object.values(this.databases)
      .map((db) => db!.name)
      .join(', ');
  }

  /** Creates a database of its own per DataSource on the server `adminUrl` and builds the app on them. */
  static async open(lib: Lib, adminUrl: string, options: { analytics: boolean }): Promise<CheckingSession> {
    const names: DataSourceName[] = options.analytics && supportsSeveralDataSources(lib) ? ['main', 'analytics'] : ['main'];
    const server = new pg.Client({ connectionString: adminUrl });
    await server.connect();
    const databases: Partial<Record<DataSourceName, Database>> = {};
    const id = randomBytes(4).toString('hex');
    for (const ds of names) {
      const name = `txlock_model_${id}_${ds}`;
      await server.query(`CREATE DATABASE "${name}"`);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      const admin = new pg.Pool({ connectionString: url.toString(), max: 4, application_name: 'model-checker-admin' });
      admin.on('error', () => undefined);
      databases[ds] = { name, url: url.toString(), admin };
    }
    await server.end();
    const app = await createAppUnderTest(lib, urlsOf(databases));
    return new CheckingSession(adminUrl, databases, app, new ProgramRunner(app, databases), lib);
  }

  /** Runs `program` once and checks it. */
  async check(program: Program, budget: SearchBudget, outcomes: Outcomes = 'exact'): Promise<Check> {
    await this.runner.reset();
    const observed = await this.runner.run(program);
    if (outcomes === 'coarse') observed.results = Object.fromEntries(Object.entries(observed.results).map(([key, value]) => [key, coarse(value)]));
    if (observed.hung) await this.rebuildApp(); // the app's pool may hold connections the watchdog killed
    const broken = [...observed.overlaps, ...observed.leaks];
    // An invariant broken outright needs no search (and the report has what it needs).
    if (broken.length > 0) return { ok: false, unknown: false, observed, reason: broken.join('; '), modelMs: 0 };
    const started = Date.now();
    const verdict = explain(program, observed, budget, outcomes === 'coarse' ? coarse : undefined);
    const modelMs = Date.now() - started;
    if (verdict.explained === true) return { ok: true, unknown: false, observed, verdict, modelMs };
    if (verdict.explained === 'unknown') return { ok: true, unknown: true, observed, verdict, reason: verdict.reason, modelMs };
    const why = verdict.impossible
      ? `${verdict.impossible.map((key) => `${key} gave ${observed.results[key]}`).join(', ')}: not an outcome the model has`
      : `${verdict.schedules} searched`;
    return { ok: false, unknown: false, observed, verdict, reason: `no schedule of the model explains the run (${why}); closest: ${verdict.reason}`, modelMs };
  }

  private async rebuildApp(): Promise<void> {
    await this.app.close().catch(() => undefined);
    this.app = await createAppUnderTest(this.lib, urlsOf(this.databases));
    this.runner = new ProgramRunner(this.app, this.databases);
  }

  async close(): Promise<void> {
    await this.app.close().catch(() => undefined);
    const server = new pg.Client({ connectionString: this.adminUrl });
    await server.connect();
    for (const db of Object.values(this.databases)) {
      await db!.admin.end().catch(() => undefined);
      await server.query(`DROP DATABASE IF EXISTS "${db!.name}" WITH (FORCE)`);
    }
    await server.end();
  }
}

function urlsOf(databases: Partial<Record<DataSourceName, Database>>): Partial<Record<DataSourceName, string>> {
  return Object.fromEntries(Object.entries(databases).map(([ds, db]) => [ds, db!.url]));
}

/**
 * The kind of a divergence, for telling defects apart in one run (`--keep-going` shrinks each kind once): a lock
 * overlap, something left behind, rows or keys the model would not commit (or would), or an outcome it would not give.
 */
export function divergenceKind(check: Check): string {
  const reason = check.reason ?? '';
  if (/overlapped/.test(reason)) return 'two holders of one advisory lock at once';
  if (check.observed.leaks.length > 0) return 'left behind after the program';
  const closest = reason.replace(/^.*closest: /, '');
  if (/absent in the run|in the model, the run ended at/.test(closest)) return 'the run lacks a write the model commits';
  if (/^(rows|counters|get-or-create rows):/.test(closest)) return `the run's ${closest.split(':')[0]} differ from every schedule`;
  const outcome = /gives (\S+), the run gave (\S+)/.exec(closest);
  if (outcome) return `an outcome the model never gives (${outcome[2]} where it gives ${outcome[1]})`;
  const foreign = /the run gave (\S+), which no schedule of the model gives/.exec(closest);
  if (foreign) return `an outcome the model never gives (${foreign[1]})`;
  return closest.replace(/\d+/g, 'N');
}

/**
 * Whether two kinds of divergence are one, for shrinking and `--keep-going`: equal, or the same error the model
 * never gives where one of them also says what the model gives instead (a short search may not get that far).
 */
export function sameKind(a: string, b: string): boolean {
  if (a === b) return true;
  const [shorter, longer] = a.length < b.length ? [a, b] : [b, a];
  return /^an outcome the model never gives \(\S+\)$/.test(shorter) && longer.startsWith(`${shorter.slice(0, -1)} where it gives `);
}
