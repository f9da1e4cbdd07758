import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DataSource } from 'typeorm';
import { TxLockModule } from '../lib/index.js';
import { createTestDatabase } from '../test/support/database.js';
import { handWritten, OurTransactions } from './scenarios/transactions.js';
import { createRows } from './scenarios/transaction-work.js';

// `node .build/bench/gc-promotion.js` (after one `npm run bench`; DATABASE_URL names the server): how much one
// transaction allocates, and how much of it V8 promotes to its old generation, ours and the hand-written TypeORM
// runner's, 8 callers for 4 s each in a process of its own (run with --trace-gc-nvp, whose lines are summed). An object that
// dies with its transaction (about a millisecond) and is promoted all the same is kept alive by something old: a dead
// object V8 allocated in the old generation (allocation-site pretenuring) that still points to it, or a long-lived
// collection it passed through. Each promoted byte is copied twice and collected by a full GC, so this is a CPU cost
// on every transaction (docs/performance.md, "Objects that outlive their transaction"). `--no-pretenuring` runs each
// variant again without allocation-site pretenuring, for comparison.

const VARIANTS = ['ours', 'hand-written', 'ours, locked', 'hand-written, locked'] as const;
type Variant = (typeof VARIANTS)[number];
const CALLERS = 8;
const WARMUP_MS = 1000;
const MEASURED_MS = 4000;

/** Runs one variant in this process (the child side) and prints its figures as JSON. */
async function measure(variant: Variant): Promise<void> {
  process.env.TXLOCK_TEST_ADMIN_URL = process.env.DATABASE_URL;
  const database = await createTestDatabase();
  @Module({ imports: [TypeOrmModule.forRoot({ type: 'postgres', url: database.url, extra: { max: CALLERS } }), TxLockModule.forRoot({})], providers: [OurTransactions] })
  class GcPromotionModule {}
  const app = await NestFactory.createApplicationContext(GcPromotionModule, { logger: ['error'] });
  try {
    const dataSource = app.get(DataSource);
    await createRows((sql, params) => dataSource.query(sql, params));
    const ours = app.get(OurTransactions);
    const locked = variant.endsWith('locked');
    const op = variant.startsWith('ours') ? (id: number) => (locked ? ours.locked(id) : ours.plain(id)) : (id: number) => handWritten(dataSource, id, locked ? 'locked' : 'plain');
    const run = async (ms: number) => {
      let ops = 0;
      const deadline = performance.now() + ms;
      const cpu = process.cpuUsage();
      await Promise.all(
        Array.from({ length: CALLERS }, async (_, caller) => {
          while (performance.now() < deadline) {
            await op(caller + 1);
            ops++;
          }
        }),
      );
      const used = process.cpuUsage(cpu);
      return { ops, cpuUs: used.user + used.system };
    };
    await run(WARMUP_MS);
    console.error('gc-promotion: measured from here');
    const result = await run(MEASURED_MS);
    console.error('gc-promotion: measured up to here');
    console.log(JSON.stringify(result));
  } finally {
    await app.close();
    await database.drop();
  }
}

interface Figures {
  ops: number;
  cpuUs: number;
  promotedBytes: number;
  allocatedBytes: number;
  scavengeMs: number;
  fullGcs: number;
}

// Runs `variant` in a child process with --trace-gc-nvp and sums the young-generation collections of the measured part.
function child(variant: Variant, pretenuring: boolean): Promise<Figures> {
  const flags = ['--trace-gc-nvp', ...(pretenuring ? [] : ['--no-allocation-site-pretenuring'])];
  const proc = spawn(process.execPath, [...flags, fileURLToPath(import.meta.url), '--child', variant], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let measuring = false;
  let promotedBytes = 0;
  let allocatedBytes = 0;
  let scavengeMs = 0;
  let fullGcs = 0;
  const onLine = (line: string) => {
    if (line.includes('gc-promotion: measured from here')) measuring = true;
    else if (line.includes('gc-promotion: measured up to here')) measuring = false;
    else if (measuring && /\bgc=/.test(line)) allocatedBytes += Number(/\ballocated=(\d+)/.exec(line)?.[1] ?? 0);
    if (measuring && /\bgc=s\b/.test(line)) {
      promotedBytes += Number(/\bpromoted=(\d+)/.exec(line)?.[1] ?? 0);
      scavengeMs += Number(/\bpause=([\d.]+)/.exec(line)?.[1] ?? 0);
    } else if (measuring && /\bgc=(mc|mmc|ms)\b/.test(line)) fullGcs++;
  };
  let pending = '';
  const read = (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith('{')) out = line;
      else onLine(line);
    }
  };
  proc.stdout.on('data', read);
  proc.stderr.on('data', read);
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code) => {
      if (code !== 0 || !out) return reject(new Error(`${variant}: the measuring process exited with ${code}`));
      const { ops, cpuUs } = JSON.parse(out) as { ops: number; cpuUs: number };
      resolve({ ops, cpuUs, promotedBytes, allocatedBytes, scavengeMs, fullGcs });
    });
  });
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return measure(process.argv[3] as Variant);
  const withoutPretenuring = process.argv.includes('--no-pretenuring');
  console.log(`Node ${process.version}, ${CALLERS} callers, ${MEASURED_MS / 1000} s per variant, each in a process of its own:`);
  console.log('  variant                                 ops/s   CPU µs/op  allocated bytes/op  promoted bytes/op  scavenge µs/op  full GCs');
  for (const pretenuring of withoutPretenuring ? [true, false] : [true]) {
    for (const variant of VARIANTS) {
      const f = await child(variant, pretenuring);
      const name = pretenuring ? variant : `${variant} (no pretenuring)`;
      const perOp = (value: number) => value / f.ops;
      console.log(
        `  ${name.padEnd(38)}  ${String(Math.round(f.ops / (MEASURED_MS / 1000))).padStart(6)}  ${perOp(f.cpuUs).toFixed(1).padStart(9)}  ${perOp(f.allocatedBytes).toFixed(0).padStart(18)}  ${perOp(f.promotedBytes).toFixed(0).padStart(17)}  ${perOp(f.scavengeMs * 1000).toFixed(1).padStart(14)}  ${String(f.fullGcs).padStart(8)}`,
      );
    }
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
