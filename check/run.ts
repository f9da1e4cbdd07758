import 'reflect-metadata';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { startEmbeddedPostgres, type EmbeddedServer } from '../lib/testing/embedded-postgres.js';
import { debugLog, loadLib, type Lib } from './model/app.js';
import { replayOracleProgram, runOracleCampaign, type OracleFigures } from './model/kit-oracle-campaign.js';
import { allowedOutcomes } from './model/explore.js';
import { coarse } from './model/observation.js';
import { programs } from './model/generator.js';
import { shrink } from './model/shrink.js';
import { size, type Program } from './model/program.js';
import { CheckingSession, divergenceKind, sameKind, type Check, type Outcomes, type SearchBudget } from './model/session.js';
import { observationSummary, programAsCode, programAsTest } from './model/shrink-report.js';

/**
 * `npm run check:model -- [--runs N] [--seed S] [--kills] [--small] [--time-limit SECONDS] [--lib DIR] [--ci]`
 *
 * Generates random programs over the library's operations, runs each on a real PostgreSQL (DATABASE_URL, or an
 * embedded one) with real concurrency, and checks what it left against the reference model. On a divergence,
 * shrinks the program (fast-check) and prints it as code and as a ready-to-paste test; exits 1.
 * `--ci`: a fixed seed with small programs (--small), then a fresh seed (printed), each within half the time budget,
 * then the testing kit's differential oracle for `--oracle-time` seconds (default 20). `--oracle`: the oracle only.
 */
interface Options {
  runs: number;
  seed?: number;
  kills: boolean;
  timeLimitS: number;
  lib?: string;
  ci: boolean;
  shrinkLimitS: number;
  attempts: number;
  verbose: boolean;
  outcomes: Outcomes;
  /** Replay this program (a JSON file) `runs` times instead of generating programs. */
  program?: string;
  keepGoing: boolean;
  /** Small programs (GeneratorOptions.small). */
  small: boolean;
  /** Only the default DataSource (no `analytics`). */
  mainOnly: boolean;
  /** The model's search budget per program, ms (then the program counts as explained, and is reported). */
  searchMs: number;
  /** `--oracle`: only the testing kit's differential oracle (kit-oracle.ts), for `runs` programs or `--time-limit` s. */
  oracle: boolean;
  /** `--oracle-time S`: the oracle's seconds after CI's two campaigns (`--ci`; 0: none). */
  oracleS: number;
}

const CI_SEED = 20261127;

function parse(argv: string[]): Options {
  const options: Options = { runs: 200, kills: false, timeLimitS: Infinity, ci: false, shrinkLimitS: 120, attempts: 3, verbose: false, outcomes: 'exact', keepGoing: false, small: false, mainOnly: false, searchMs: 3_000, oracle: false, oracleS: 20 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      return next;
    };
    if (arg === '--runs') options.runs = Number(value());
    else if (arg === '--seed') options.seed = Number(value());
    else if (arg === '--kills') options.kills = true;
    else if (arg === '--time-limit') options.timeLimitS = Number(value());
    else if (arg === '--shrink-limit') options.shrinkLimitS = Number(value());
    else if (arg === '--attempts') options.attempts = Number(value());
    else if (arg === '--lib') options.lib = value();
    else if (arg === '--ci') options.ci = true;
    else if (arg === '--verbose') options.verbose = true;
    else if (arg === '--program') options.program = value();
    else if (arg === '--keep-going') options.keepGoing = true;
    else if (arg === '--small') options.small = true;
    else if (arg === '--main-only') options.mainOnly = true;
    else if (arg === '--search-ms') options.searchMs = Number(value());
    else if (arg === '--oracle') options.oracle = true;
    else if (arg === '--oracle-time') options.oracleS = Number(value());
    else if (arg === '--outcomes') {
      const outcomes = value();
      if (outcomes !== 'exact' && outcomes !== 'coarse') throw new Error('--outcomes is exact or coarse');
      options.outcomes = outcomes;
    }
    else throw new Error(`unknown argument ${arg}`);
  }
  return options;
}

interface Stats {
  programs: number;
  ops: number;
  runMs: number;
  modelMs: number;
  unknown: number;
  maxSchedules: number;
  skipped: number;
  unsettledShrinks: number;
  started: number;
  /** Time spent shrinking and reporting, which the time limit does not count (it is for finding). */
  asideMs: number;
}

/** Seconds of finding so far (shrinking and reports left out), for telling when a divergence was found. */
const searchSeconds = (stats: Stats): string => ((Date.now() - stats.started - stats.asideMs) / 1000).toFixed(0);

/** The kind in `known` that `kind` is one with (sameKind), if any. */
const knownKind = (known: ReadonlyMap<string, number>, kind: string): string | undefined => [...known.keys()].find((seen) => sameKind(seen, kind));

interface Failure {
  program: Program;
  check: Check;
  shrinkMs?: number;
  /** Not a proven divergence: a program the model's search could not settle (see --keep-going). */
  unsettled?: boolean;
  /** Seconds of finding (searchSeconds) when it was found. */
  foundAfterS?: string;
}

/** One fast-check campaign with one seed. Resolves to the shrunk failure, if any. */
async function campaign(
  session: CheckingSession,
  options: Options,
  seed: number,
  runs: number,
  timeLimitS: number,
  stats: Stats,
  known: Map<string, number>,
  small = false,
): Promise<Failure | undefined> {
  const budget: SearchBudget = { schedules: 50_000, ms: options.searchMs };
  const deadline = Date.now() + timeLimitS * 1000;
  let failure: Failure | undefined;
  const generatorOptions = { kills: options.kills, dataSources: session.dataSources, small: options.small || small };
  // The program being checked: fast-check's time limit races it and returns while it still runs, and the next
  // campaign must not reset the database under it (both would diverge: seen as a false alarm in CI's second half).
  let inFlight: Promise<unknown> = Promise.resolve();
  const checkProgram = async (program: Program): Promise<boolean> => {
    if (Date.now() > deadline) {
      stats.skipped++;
      return true;
    }
    const check = await session.check(program, budget, options.outcomes);
    stats.programs++;
    stats.ops += size(program);
    stats.runMs += check.observed.ms;
    stats.modelMs += check.modelMs;
    stats.maxSchedules = Math.max(stats.maxSchedules, check.verdict?.schedules ?? 0);
    if (check.unknown) {
      stats.unknown++;
      console.log(`  program ${stats.programs}: the model's search ran out of budget (${check.verdict?.schedules} schedules); counted as explained`);
      if (options.verbose) console.log(`${programAsCode(program, check.observed, check.verdict)}\n${observationSummary(check.observed)}\nclosest: ${check.reason}`);
    }
    if (options.verbose || stats.programs % 100 === 0) {
      console.log(`  ${stats.programs} programs, ${(stats.runMs / stats.programs).toFixed(0)} ms run + ${(stats.modelMs / stats.programs).toFixed(1)} ms model each`);
    }
    if (check.unknown && options.keepGoing && stats.unsettledShrinks < 2) {
      // --keep-going: a program the search could not settle may hide a divergence: shrink it (twice per run at
      // most, 20 s each), asking for a proven one.
      stats.unsettledShrinks++;
      console.log(`\nUNSETTLED program ${stats.programs} (${size(program)} operations): shrinking it to see whether it diverges`);
      failure = { program, check, unsettled: true, foundAfterS: searchSeconds(stats) };
      return false;
    }
    if (check.ok) return true;
    const seen = knownKind(known, divergenceKind(check));
    if (options.keepGoing && seen !== undefined) {
      // --keep-going: a kind of divergence already shrunk in this run is counted, not shrunk again.
      known.set(seen, known.get(seen)! + 1);
      return true;
    }
    console.log(`\nDIVERGENCE in program ${stats.programs} (${size(program)} operations, after ${searchSeconds(stats)} s of search): ${check.reason}`);
    failure = { program, check, foundAfterS: searchSeconds(stats) };
    return false;
  };
  const property = fc.asyncProperty(programs(generatorOptions), (program) => {
    const checked = checkProgram(program);
    inFlight = checked.catch(() => undefined);
    return checked;
  });
  // fast-check generates (seeded) and stops at the first divergence; the shrinking is ours (check/model/shrink.ts).
  // At the time limit fast-check stops drawing programs (drawing the rest of `runs` only to skip them costs minutes).
  const interrupt = Number.isFinite(timeLimitS) ? { interruptAfterTimeLimit: Math.max(1, timeLimitS * 1000), markInterruptAsFailure: false } : {};
  const details = await fc.check(property, { seed, numRuns: runs, endOnFailure: true, ...interrupt });
  await inFlight; // may still find a divergence (then reported below, as any other)
  if (details.failed && !failure && details.errorInstance) throw details.errorInstance;
  if (!failure) return undefined;
  let kind = failure.unsettled ? undefined : divergenceKind(failure.check);
  console.log(`shrinking (${kind ? `the same kind of divergence: ${kind}` : 'a proven divergence of any kind'}; each candidate up to ${options.attempts} runs, at most ${options.shrinkLimitS} s)...`);
  const started = Date.now();
  const shrunk = await shrink(
    failure.program,
    failure.check,
    async (candidate) => {
      for (let attempt = 0; attempt < options.attempts; attempt++) {
        const check = await session.check(candidate, budget, options.outcomes);
        const found = check.ok ? undefined : divergenceKind(check);
        if (found === undefined || (kind !== undefined && !sameKind(found, kind)) || (kind === undefined && options.keepGoing && knownKind(known, found) !== undefined)) continue;
        kind ??= found;
        return check;
      }
      return undefined;
    },
    generatorOptions,
    (failure.unsettled ? Math.min(20, options.shrinkLimitS) : options.shrinkLimitS) * 1000,
  );
  const shrinkMs = Date.now() - started;
  console.log(`shrunk from ${size(failure.program)} to ${size(shrunk.program)} operations in ${shrunk.steps} steps (${shrunk.tried} candidates tried, ${(shrinkMs / 1000).toFixed(0)} s)`);
  if (shrunk.failure.ok || shrunk.failure.unknown) {
    console.log('no smaller program diverges for sure: left as unsettled (counted as explained)');
    return { program: shrunk.program, check: shrunk.failure, shrinkMs, unsettled: true };
  }
  return { program: shrunk.program, check: shrunk.failure, shrinkMs, foundAfterS: failure.foundAfterS };
}

function report(failure: Failure, seed: number, label: string, outcomes: Outcomes): void {
  const { program, check } = failure;
  console.log(`\n=== shrunk program (${size(program)} operations), seed ${seed}, library: ${label} ===`);
  console.log(`why: ${check.reason}\n`);
  console.log(programAsCode(program, check.observed, check.verdict));
  console.log(`\n${observationSummary(check.observed)}`);
  const allowed = allowedOutcomes(program, 8, 200_000, outcomes === 'coarse' ? coarse : undefined, 5_000);
  console.log(`\nthe model allows ${allowed.complete ? '' : 'at least '}${allowed.outcomes.length} outcome(s), for example:`);
  for (const outcome of allowed.outcomes.slice(0, 4)) console.log(`  ${JSON.stringify(outcome)}`);
  console.log(`\n--- ready-to-paste test ---\n${programAsTest(program, `model checker, seed ${seed}: ${check.reason?.slice(0, 80)}`)}\n`);
}

async function main(): Promise<void> {
  const options = parse(process.argv.slice(2));
  const { lib, label } = await loadLib(options.lib);
  let server: EmbeddedServer | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    server = await startEmbeddedPostgres(await mkdtemp(join(tmpdir(), 'txlock-model-')));
    adminUrl = server.url;
  }
  if (options.oracle && options.program) {
    const program = JSON.parse(await readFile(options.program, 'utf8')) as Program;
    const differences = await replayOracleProgram(lib, adminUrl, options.lib, program, options.runs === 200 ? 1 : options.runs).finally(() => server?.stop());
    process.exit(differences > 0 ? 1 : 0);
  }
  if (options.oracle) {
    const figures = await oracle(lib, adminUrl, options, options.seed ?? freshSeed(), options.timeLimitS).finally(() => server?.stop());
    process.exit(figures.differences > 0 ? 1 : 0);
  }
  const session = await CheckingSession.open(lib, adminUrl, { analytics: !options.mainOnly });
  const stats: Stats = { programs: 0, ops: 0, runMs: 0, modelMs: 0, unknown: 0, maxSchedules: 0, skipped: 0, unsettledShrinks: 0, started: Date.now(), asideMs: 0 };
  const started = Date.now();
  let failed = false;
  try {
    const seeds: { seed: number; runs: number; limit: number; what: string; small?: boolean }[] = options.ci
      ? [
          { seed: CI_SEED, runs: options.runs, limit: options.timeLimitS / 2, what: 'fixed seed, small programs', small: true },
          { seed: options.seed ?? freshSeed(), runs: options.runs, limit: options.timeLimitS / 2, what: 'fresh seed' },
        ]
      : [{ seed: options.seed ?? freshSeed(), runs: options.runs, limit: options.timeLimitS, what: options.seed === undefined ? 'fresh seed' : 'seed' }];
    console.log(
      `model checker: library ${label}; ${server ? 'embedded PostgreSQL' : 'DATABASE_URL'}; database ${session.database}` +
        `; DataSources ${session.dataSources.join(', ')}${options.kills ? '; with connection kills' : ''}${options.outcomes === 'coarse' ? '; coarse outcomes (ok or error)' : ''}`,
    );
    if (options.program) {
      const program = JSON.parse(await readFile(options.program, 'utf8')) as Program;
      console.log(programAsCode(program));
      for (let i = 1; i <= options.runs && !failed; i++) {
        const check = await session.check(program, { schedules: 200_000, ms: 60_000 }, options.outcomes);
        stats.programs++;
        stats.runMs += check.observed.ms;
        stats.modelMs += check.modelMs;
        if (!check.ok || options.verbose) {
          console.log(`run ${i}: ${check.ok ? 'explained' : `DIVERGENCE: ${check.reason}`} (${check.verdict?.schedules} schedules)`);
          console.log(programAsCode(program, check.observed, check.verdict));
          console.log(observationSummary(check.observed));
        }
        failed = !check.ok;
        if (process.env.MODEL_DEBUG && failed) console.log(debugLog.join('\n'));
        debugLog.length = 0;
      }
      seeds.length = 0;
    }
    const found: string[] = [];
    const known = new Map<string, number>();
    for (const { seed: first, runs, limit, what, small } of seeds) {
      let deadline = Date.now() + limit * 1000;
      for (let seed = first; ; seed++) {
        const left = Number.isFinite(limit) ? Math.max(0, (deadline - Date.now()) / 1000) : Infinity;
        console.log(`${what} ${seed}: up to ${runs} programs${Number.isFinite(left) ? ` or ${Math.round(left)} s` : ''} (replay with --seed ${seed}${options.kills ? ' --kills' : ''})`);
        const failure = await campaign(session, options, seed, runs, left, stats, known, small);
        if (!failure) break;
        // The time limit is for finding; shrinking and the report (the model's outcomes take up to 5 s) come on top.
        const aside = Date.now();
        if (!failure.unsettled) report(failure, seed, label, options.outcomes);
        const asideMs = (failure.shrinkMs ?? 0) + Date.now() - aside;
        deadline += asideMs;
        stats.asideMs += asideMs;
        if (failure.unsettled) {
          if (Date.now() > deadline) break;
          continue;
        }
        found.push(`seed ${seed}, after ${failure.foundAfterS} s of search: ${divergenceKind(failure.check)}: ${failure.check.reason}`);
        known.set(divergenceKind(failure.check), 1);
        failed = true;
        // --keep-going: on to the next seed while time is left (to see several defects in one run).
        if (!options.keepGoing || Date.now() > deadline) break;
      }
      if (failed && !options.keepGoing) break;
    }
    // CI: a fixed share of the budget for the testing kit's differential oracle, after the model's two campaigns.
    if (options.ci && !failed && options.oracleS > 0) {
      const figures = await oracle(lib, adminUrl, options, options.seed ?? freshSeed(), options.oracleS);
      failed = figures.differences > 0;
    }
    if (found.length > 1) console.log(`\n${found.length} divergences:\n${found.map((line) => `  ${line}`).join('\n')}`);
    if (options.keepGoing && known.size > 0) {
      console.log(`divergences by kind (programs): ${[...known].map(([kind, n]) => `${kind}: ${n}`).join('; ')}`);
    }
  } finally {
    await session.close();
    await server?.stop();
  }
  const seconds = (Date.now() - started) / 1000;
  const per = stats.programs > 0 ? `${((stats.runMs + stats.modelMs) / stats.programs).toFixed(0)} ms per program (${(stats.runMs / stats.programs).toFixed(0)} run, ${(stats.modelMs / stats.programs).toFixed(1)} model)` : '';
  console.log(
    `\n${stats.programs} programs (${stats.ops} operations), ${failed ? 'a divergence' : 'no divergence'}, ${stats.unknown} beyond the search budget, ` +
      `up to ${stats.maxSchedules} schedules searched; ${per}; ${seconds.toFixed(0)} s in all${stats.skipped ? `; ${stats.skipped} not run (time limit)` : ''}`,
  );
  process.exit(failed ? 1 : 0);
}

/** A campaign of the testing kit's differential oracle (check/model/kit-oracle.ts). */
function oracle(lib: Lib, adminUrl: string, options: Options, seed: number, timeLimitS: number): Promise<OracleFigures> {
  const runs = Number.isFinite(timeLimitS) && options.runs === 200 ? 1_000_000 : options.runs;
  return runOracleCampaign(lib, adminUrl, { seed, runs, timeLimitS, libDir: options.lib, small: options.small, shrinkLimitS: options.shrinkLimitS, verbose: options.verbose, keepGoing: options.keepGoing });
}

function freshSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(2);
});
