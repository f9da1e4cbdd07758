import 'reflect-metadata';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedServer } from '../lib/testing/embedded-postgres.js';
import { createTestDatabase } from '../test/support/database.js';
import type { BenchContext, Scenario } from './context.js';
import { FULL, QUICK } from './harness.js';
import { MachineCpu } from './machine-cpu.js';
import { formatComparison, formatLayers, formatMemory, formatResults, formatTargets, type ResultsFile } from './report.js';
import { Relay } from './relay.js';
import { BenchRunner } from './runner.js';
import { advisoryLockScenario } from './scenarios/advisory-lock.js';
import { counterScenario } from './scenarios/counters.js';
import { crossProcessScenario } from './scenarios/cross-process.js';
import { getOrCreateScenario } from './scenarios/get-or-create.js';
import { memoryScenario } from './scenarios/memory.js';
import { outboxScenario } from './scenarios/outbox.js';
import { repositoryScenario } from './scenarios/repository-calls.js';
import { telemetryScenario } from './scenarios/telemetry.js';
import { transactionScenario } from './scenarios/transactions.js';
import { evaluateTargets } from './targets.js';

const USAGE = `npm run bench -- [options]
  --quick             smoke run: every scenario, briefly (figures not meaningful)
  --only=1,3          only these scenarios (1 transactions, 2 advisory lock, 3 hot-key counter,
                      4 getOrCreate, 5 hot key across processes, 6 memory,
                      7 repository call outside a transaction, 8 OpenTelemetry overhead,
                      9 outbox: events delivered per second with 1 and 4 replicas, commit-to-handler latency)
  --variant=a,b       only variants whose name contains a or b (case-insensitive); baselines still run
  --callers=1,64      only groups with these many callers
  --profile           V8 CPU profile of the timed rounds of the selected variants: top functions printed,
                      .cpuprofile files in .build/profiles/ (use with --only and --variant), and the
                      Node CPU µs/op of each variant split by layer
  --layers            the split by layer for every variant of scenario 1 (or of --only): --profile for all
  --rtt=0.5           a relay process between Node and PostgreSQL adds this round trip (ms, half each way),
                      as with a database on another host; its CPU is reported (the relay µs/op column)
  --out=file.json     also write the results there (always: bench/results/latest.json)
  --compare old.json  after the run, compare with an earlier results file
  --compare a.json b.json   compare two results files, without running anything
DATABASE_URL=postgres://... runs on that server (a database is created and dropped on it), else on an
embedded PostgreSQL 18 started for the run (fsync=off, synchronous_commit=off).`;

const SCENARIOS: Scenario[] = [
  transactionScenario,
  advisoryLockScenario,
  counterScenario,
  getOrCreateScenario,
  crossProcessScenario,
  memoryScenario,
  repositoryScenario,
  telemetryScenario,
  outboxScenario,
];

async function main(): Promise<number> {
  const { values: args, positionals } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      variant: { type: 'string' },
      callers: { type: 'string' },
      profile: { type: 'boolean', default: false },
      layers: { type: 'boolean', default: false },
      rtt: { type: 'string' },
      out: { type: 'string' },
      compare: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  if (args.compare && positionals[0]) {
    console.log(formatComparison(await readResults(args.compare), await readResults(positionals[0])));
    return 0;
  }
  const list = (value: string | undefined) => value?.split(',').map((s) => s.trim()).filter(Boolean);
  const only = list(args.only) ?? (args.layers ? ['1'] : undefined);
  const settings = args.quick ? QUICK : FULL;
  const rttMs = args.rtt === undefined ? undefined : Number(args.rtt);
  if (rttMs !== undefined && !(rttMs > 0 && rttMs <= 100)) throw new Error(`--rtt takes a round trip in ms, above 0 and at most 100: ${args.rtt}`);

  let server: EmbeddedServer | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    server = await startEmbeddedPostgres(await mkdtemp(join(tmpdir(), 'txlock-bench-')));
    adminUrl = server.url;
  }
  process.env.TXLOCK_TEST_ADMIN_URL = adminUrl;
  const database = await createTestDatabase();
  const relay = rttMs === undefined ? undefined : await Relay.start(database.url, rttMs);
  const cpu = await MachineCpu.open(database.url, relay);
  try {
    const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
    const serverText = `${await describeServer(database.url, server ? 'embedded' : 'DATABASE_URL')}${relay ? `, through a relay process adding ${relay.rttMs} ms per round trip` : ''}`;
    const runner = new BenchRunner({ settings, variants: list(args.variant), callers: list(args.callers)?.map(Number), profile: args.profile || args.layers, cpu });
    runner.progress(`nestjs-txlock bench${args.quick ? ' --quick' : ''}: ${machine}; ${serverText}`);
    runner.progress(`each variant: ${settings.warmupMs} ms warm-up, then ${settings.rounds} rounds of ${settings.roundMs} ms taking turns with its group`);
    const context: BenchContext = { url: relay?.url ?? database.url, settings, runner, memory: [] };
    for (const [index, scenario] of SCENARIOS.entries()) {
      if (!only || only.includes(String(index + 1))) await scenario(context);
    }

    const { results } = runner;
    const targets = evaluateTargets(results, context.memory, rttMs);
    const relayStats = await relay?.stats();
    const others = results.map((r) => r.othersPercent).filter((p): p is number => p !== undefined);
    const othersPercent = others.length ? others.reduce((a, b) => a + b, 0) / others.length : undefined;
    console.log(`\nnestjs-txlock bench${args.quick ? ' (--quick: smoke run, figures not meaningful)' : ''} — ${machine}; ${serverText}\n`);
    console.log(formatResults(results));
    if (context.memory.length) console.log(`\nMemory (forced GC after each tenth of the run):\n\n${formatMemory(context.memory)}`);
    const layers = formatLayers(results);
    if (layers) console.log(`\nNode CPU µs/op by layer (self time in the V8 profile of the timed rounds, scaled to the CPU they used; profiling slows every variant alike):\n\n${layers}`);
    if (targets.length) console.log(`\nTargets (issues 16, 25 and 27${rttMs ? `; the network profile, ${rttMs} ms round trip` : ''}):\n\n${formatTargets(targets)}`);
    if (relayStats) {
      console.log(`\nThe relay held ${relayStats.relayed.toLocaleString('en-US')} chunks ${relayStats.meanHoldMs.toFixed(3)} ms each on average (asked: ${(rttMs! / 2).toFixed(3)} ms each way); its CPU is the relay µs/op column.`);
    }
    if (othersPercent !== undefined) {
      console.log(`\nOther processes on this machine used ${othersPercent.toFixed(0)}% of its CPU on average during the timed rounds${othersPercent > 10 ? ' (a shared machine: expect noise)' : ''}.`);
    }

    const file: ResultsFile = {
      date: new Date().toISOString(),
      quick: args.quick,
      machine,
      server: serverText,
      results,
      targets,
      memory: context.memory,
      othersPercent,
      rttMs,
      relayMeanHoldMs: relayStats?.meanHoldMs,
    };
    const text = `${JSON.stringify(file, null, 2)}\n`;
    const latest = join(process.cwd(), 'bench', 'results', 'latest.json');
    for (const path of [latest, ...(args.out ? [resolve(args.out)] : [])]) {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, text);
    }
    if (args.compare) console.log(`\nCompared with ${args.compare}:\n\n${formatComparison(await readResults(args.compare), file)}`);

    // A smoke run checks that everything runs and stays exact, never its speed: only a wrong count fails it.
    const wrong = results.filter((r) => /LOST|NOT EXACT/.test(r.note ?? '') && !r.variant.startsWith('naive'));
    const wrongMemory = context.memory.filter((m) => m.note?.includes('COUNT WRONG'));
    for (const row of wrongMemory.length ? [...wrong, ...wrongMemory] : wrong) console.error(`NOT EXACT: ${row.variant}: ${row.note}`);
    return wrong.length || wrongMemory.length ? 1 : 0;
  } finally {
    await cpu.close();
    await relay?.stop();
    await database.drop();
    await server?.stop();
  }
}

async function readResults(path: string): Promise<ResultsFile> {
  return JSON.parse(await readFile(path, 'utf8')) as ResultsFile;
}

// The settings that decide what a commit costs: the embedded server runs without fsync.
async function describeServer(url: string, kind: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<Record<string, string>>(
      `SELECT current_setting('server_version') AS version, current_setting('fsync') AS fsync,
              current_setting('synchronous_commit') AS synchronous_commit, current_setting('full_page_writes') AS full_page_writes`,
    );
    const s = rows[0]!;
    return `PostgreSQL ${s.version!.split(' ')[0]} (${kind}, fsync=${s.fsync}, synchronous_commit=${s.synchronous_commit}, full_page_writes=${s.full_page_writes})`;
  } finally {
    await client.end();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
