/**
 * A campaign of the testing kit's differential oracle (kit-oracle.ts): random programs a single test could run, each
 * compared as production and under the kit, for a number of programs or seconds; the first difference is shrunk and
 * printed. `npm run check:model -- --oracle`, and a fixed share of CI's run (`--ci`).
 */
import fc from 'fast-check';
import type { Lib } from './app.js';
import { programs } from './generator.js';
import { asTestProgram, hasSpawn, KitOracle, loadTesting, VARIANTS, type OracleCheck, type Variant } from './kit-oracle.js';
import type { Observation } from './observation.js';
import { size, type Program } from './program.js';
import { shrink } from './shrink.js';
import { programAsCode } from './shrink-report.js';

/** What a campaign is given. */
export interface OracleOptions {
  seed: number;
  runs: number;
  timeLimitS: number;
  /** `--lib DIR` (its dist/testing/index.js is the kit), or undefined for this checkout. */
  libDir?: string;
  small: boolean;
  shrinkLimitS: number;
  verbose: boolean;
  /** Go on after a difference (with the next seed) until the time is up, reporting each (for measuring finds). */
  keepGoing: boolean;
}

/** A campaign's figures. */
export interface OracleFigures {
  programs: number;
  /** Programs with un-awaited work, also run with that work coming after their test. */
  lateRuns: number;
  /** Programs whose results all matched and whose rows seen were compared. */
  fullyCompared: number;
  /** Programs whose production run hung or left something behind (not compared: the model checker's business). */
  productionFailed: number;
  /** Programs where a rule allowed a difference (the results after it and the rows seen were left out), by rule. */
  byRule: Record<string, number>;
  differences: number;
  /** Seconds of search when each difference was found, with its first line. */
  finds: string[];
  ms: number;
}

/** Runs one campaign; resolves to its figures (differences > 0: a difference was found and printed). */
export async function runOracleCampaign(lib: Lib, adminUrl: string, options: OracleOptions): Promise<OracleFigures> {
  const testing = await loadTesting(options.libDir);
  const oracle = await KitOracle.open(lib, testing, adminUrl);
  const figures: OracleFigures = { programs: 0, lateRuns: 0, fullyCompared: 0, productionFailed: 0, byRule: {}, differences: 0, finds: [], ms: 0 };
  const started = Date.now();
  let aside = 0;
  const kinds = new Map<string, number>();
  const reported = new Set<string>();
  const firstSeen = new Map<string, string>();
  const deadline = () => started + aside + options.timeLimitS * 1000;
  const generator = programs({ kills: false, dataSources: ['main'], small: options.small })
    .map(asTestProgram)
    .filter((program): program is Program => program !== undefined);
  console.log(`kit oracle: database ${oracle.databaseName}; variants ${VARIANTS.join(', ')}; up to ${options.runs} programs or ${options.timeLimitS} s`);
  try {
    for (let seed = options.seed; Date.now() < deadline(); seed++) {
      console.log(`kit oracle, seed ${seed} (replay with --oracle --seed ${seed})`);
      let found: OracleCheck | undefined;
      let foundProgram: Program | undefined;
      let inFlight: Promise<unknown> = Promise.resolve();
      const property = fc.asyncProperty(generator, (program) => {
        const checked = (async () => {
          if (Date.now() > deadline() || found) return true;
          const variant = VARIANTS[figures.programs % VARIANTS.length]!;
          const check = await oracle.check(program, variant);
          figures.programs++;
          if (check.late) figures.lateRuns++;
          if (check.productionFailed) {
            figures.productionFailed++;
            console.log(`  program ${figures.programs}: production itself failed (${check.productionFailed.slice(0, 160)}); not compared: ${JSON.stringify(program)}`);
          } else if (check.comparison.allowed.length === 0) figures.fullyCompared++;
          for (const rule of new Set(check.comparison.allowed.map((a) => a.rule))) figures.byRule[rule] = (figures.byRule[rule] ?? 0) + 1;
          if (options.verbose || figures.programs % 100 === 0) console.log(`  ${figures.programs} programs, ${figures.differences} differences, ${((Date.now() - started - aside) / 1000).toFixed(0)} s (last: ${check.ms} ms, production ${check.production.ms} ms, kit ${check.kit.ms} ms${check.late ? `, late ${check.late.ms} ms` : ""})`);
          if (check.ok) return true;
          const seenNow = differenceKinds(check);
          const at = `${((Date.now() - started - aside) / 1000).toFixed(1)} s (program ${figures.programs})`;
          for (const kind of seenNow) {
            if (!kinds.has(kind)) firstSeen.set(kind, at);
            kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
          }
          // --keep-going: a program showing only kinds already reported is counted, not shrunk again.
          if (options.keepGoing && seenNow.every((kind) => reported.has(kind))) return true;
          for (const kind of seenNow) reported.add(kind);
          found = check;
          foundProgram = program;
          return false;
        })();
        inFlight = checked.catch(() => undefined);
        return checked;
      });
      const left = Math.max(1, deadline() - Date.now());
      const interrupt = Number.isFinite(left) ? { interruptAfterTimeLimit: left, markInterruptAsFailure: false } : {};
      const details = await fc.check(property, { seed, numRuns: options.runs, endOnFailure: true, ...interrupt });
      await inFlight;
      if (details.failed && !found) throw details.errorInstance ?? new Error(`fast-check: ${JSON.stringify(details.counterexample)?.slice(0, 300)}`);
      if (!found || !foundProgram) break;
      figures.differences++;
      const foundAfter = ((Date.now() - started - aside) / 1000).toFixed(1);
      const asideStarted = Date.now();
      console.log(`\nKIT DIFFERENCE in program ${figures.programs} (${size(foundProgram)} operations, variant ${found.variant}, after ${foundAfter} s): ${found.differences[0]}`);
      const shrunk = await shrinkDifference(oracle, foundProgram, found, options.shrinkLimitS);
      report(shrunk.program, shrunk.check, seed);
      figures.finds.push(`after ${foundAfter} s (seed ${seed}, program ${figures.programs}, variant ${found.variant}): ${differenceKind(found)}: ${shrunk.check.differences[0]?.split('\n')[0]}`);
      aside += Date.now() - asideStarted;
      if (!options.keepGoing) break;
    }
  } finally {
    figures.ms = Date.now() - started;
    await oracle.close();
  }
  const rules = Object.entries(figures.byRule).map(([rule, n]) => `${rule}: ${n}`).join('; ') || 'none';
  console.log(
    `\nkit oracle: ${figures.programs} programs compared (${figures.fullyCompared} in full, ${figures.lateRuns} also with late work, ${figures.productionFailed} whose production run failed), ` +
      `${figures.differences} difference(s); differences allowed by rule (programs): ${rules}; ${(figures.ms / 1000).toFixed(0)} s`,
  );
  if (figures.finds.length > 0) console.log(`finds:\n${figures.finds.map((line) => `  ${line}`).join('\n')}`);
  if (kinds.size > 0) console.log(`differences by kind (programs; first seen after): ${[...kinds].map(([kind, n]) => `${kind}: ${n} (${firstSeen.get(kind)})`).join('; ')}`);
  return figures;
}

/** The kinds of difference a check shows, for telling defects apart in one run (`--keep-going` reports each kind once). */
export function differenceKinds(check: OracleCheck): string[] {
  const all = check.differences.join('\n');
  const kinds: [string, RegExp][] = [
    ['late work not refused, seen by the next test, or committed', /^late work/m],
    ["the test's writes survive its rollback", /^after the test, the tables are not what they were before/m],
    ['readOnly of an app transaction dropped', /production QueryFailedError:25006, under the kit ok/],
    ['timeoutMs of an app transaction dropped', /production TransactionTimeoutError, under the kit (?!TransactionTimeoutError)/],
    ['the test hangs where production finishes', /did not finish under the kit/],
    ["the test's rollback fails", /rollback threw/],
    ['lock bodies overlap under the kit', /lock overlaps under the kit/],
    ['the test sees other rows than production committed', /^(rows|counters|get-or-create rows per key) seen/m],
  ];
  const found = kinds.filter(([, pattern]) => pattern.test(all)).map(([kind]) => kind);
  return found.length > 0 ? found : ['a result differs'];
}

/** The main kind of a difference (the first of differenceKinds). */
export const differenceKind = (check: OracleCheck): string => differenceKinds(check)[0]!;

// Shrinks a program that differs to a smaller one that differs in the same kind (two tries per candidate).
async function shrinkDifference(oracle: KitOracle, program: Program, check: OracleCheck, limitS: number): Promise<{ program: Program; check: OracleCheck }> {
  console.log(`shrinking (at most ${limitS} s)...`);
  const started = Date.now();
  const shrunk = await shrink(
    program,
    check,
    async (candidate) => {
      if (candidate.requests.length !== 1) return undefined;
      if (hasSpawn(program) !== hasSpawn(candidate) && check.differences.every((d) => d.startsWith('late work'))) return undefined;
      for (let attempt = 0; attempt < 2; attempt++) {
        const again = await oracle.check(candidate, check.variant);
        if (!again.ok && differenceKind(again) === differenceKind(check)) return again;
      }
      return undefined;
    },
    { kills: false, dataSources: ['main'] },
    limitS * 1000,
  );
  console.log(`shrunk from ${size(program)} to ${size(shrunk.program)} operations (${shrunk.tried} candidates, ${((Date.now() - started) / 1000).toFixed(0)} s)`);
  return { program: shrunk.program, check: shrunk.failure };
}

function report(program: Program, check: OracleCheck, seed: number): void {
  console.log(`\n=== kit difference (seed ${seed}, app variant ${variantNote(check.variant)}) ===`);
  console.log(check.differences.map((d) => `- ${d}`).join('\n'));
  console.log('\nthe program, with what the test under the kit gave (production in the second column):');
  console.log(programAsCode(program, check.kit, { closest: { results: check.production.results } } as never).replaceAll('the closest model schedule', 'production'));
  console.log(`\nproduction committed: ${state(check.production)}\nthe test saw:         ${state(check.kit)}`);
  if (check.late) console.log(`late work's results (its test ended before it ran): ${JSON.stringify(check.late.results)}`);
  if (check.comparison.allowed.length > 0) console.log(`allowed by rule: ${check.comparison.allowed.map((a) => `${a.key} (${a.rule}: ${a.production} / ${a.kit})`).join('; ')}`);
  console.log(`\nas JSON (--program FILE replays it in the model checker): ${JSON.stringify(program)}\n`);
}

const variantNote = (variant: Variant) =>
  variant === 'join-off' ? 'joinDataSource: false' : variant === 'timeouts' ? 'timeouts: a `bad` insert, and an insert whose id is a multiple of 3, first runs a 200 ms statement under REQUIRES_NEW { timeoutMs: 20 }' : 'default';

const state = (o: Observation) => `rows ${JSON.stringify(o.rows)}, counters ${JSON.stringify(o.counters)}, get-or-create ${JSON.stringify(o.goc)}`;

/** Replays one program (`--oracle --program FILE.json`) on each app variant, `runs` times; resolves to the differences found. */
export async function replayOracleProgram(lib: Lib, adminUrl: string, libDir: string | undefined, program: Program, runs: number, variants: readonly Variant[] = VARIANTS): Promise<number> {
  const oracle = await KitOracle.open(lib, await loadTesting(libDir), adminUrl);
  let differences = 0;
  try {
    for (let run = 1; run <= runs; run++) {
      for (const variant of variants) {
        const check = await oracle.check(program, variant);
        console.log(`run ${run}, ${variant}: ${check.ok ? 'same' : `${check.differences.length} difference(s)`} (${check.ms} ms; production ${check.production.ms} ms, kit ${check.kit.ms} ms${check.late ? `, late ${check.late.ms} ms` : ''})`);
        if (!check.ok) {
          differences++;
          report(program, check, 0);
        }
      }
    }
  } finally {
    await oracle.close();
  }
  return differences;
}
