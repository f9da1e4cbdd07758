import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DataSource } from 'typeorm';
import { CounterService, Transactional, TransactionHost, TxLockModule } from '../../lib/index.js';
import type { BenchContext, MemoryReport } from '../context.js';
import { createRows, randomRow } from './transaction-work.js';

const SCENARIO = '6. memory';
const MiB = 2 ** 20;
// What "no growth" allows between the first and the last tenth, after a full GC: allocator noise, not a leak
// (a leak of even 16 bytes per operation is 15 MiB over a million increments).
const HEAP_SLACK_MIB = 2;
const RSS_SLACK_MIB = 16;

/** The variant names of scenario 6. */
export const MEMORY_VARIANTS = {
  increments: 'CounterService.increment, 64 callers, one key (coalesced)',
  transactions: '@Transactional(), 8 callers, 1 statement each',
} as const;

@Injectable()
class OneStatement {
  constructor(private readonly tx: TransactionHost) {}

  @Transactional()
  async run(id: number): Promise<void> {
    await this.tx.manager.query('SELECT n FROM bench_row WHERE id = $1', [id]);
  }
}

/**
 * Scenario 6: the leak check. A million coalesced increments, then a hundred thousand transactions, each
 * run in ten equal parts with a forced GC after each; reports heap and RSS after the first and the last
 * part. Whatever the library keeps per call (a scope, a timer, a queue entry, a closure) would show here.
 */
export async function memoryScenario({ url, settings, runner, memory }: BenchContext): Promise<void> {
  const wanted = Object.values(MEMORY_VARIANTS).filter((v) => runner.wantsVariant(v));
  if (!wanted.length) return;
  const gc = exposeGc();

  @Module({
    imports: [TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 16 } }), TxLockModule.forRoot({ counters: { autoCreate: true } })],
    providers: [OneStatement],
  })
  class MemoryBenchModule {}
  const app = await NestFactory.createApplicationContext(MemoryBenchModule, { logger: ['error'] });
  try {
    const dataSource = app.get(DataSource);
    await createRows((sql, params) => dataSource.query(sql, params));
    const counters = app.get(CounterService);
    const work = app.get(OneStatement);
    const run = async (variant: string, operations: number, callers: number, op: () => Promise<unknown>, check: () => Promise<string>) => {
      if (!runner.wantsVariant(variant)) return;
      runner.progress(`${SCENARIO}: ${variant}, ${operations.toLocaleString('en-US')} operations in 10 parts`);
      const report = await inTenths(variant, operations, callers, op, gc, (line) => runner.progress(`   ${line}`));
      report.note = `${leakVerdict(report)}; ${await check()}`;
      runner.progress(`   ${report.note}`);
      memory.push(report);
    };
    await counters.delete('bench-memory');
    await run(MEMORY_VARIANTS.increments, settings.memory.increments, 64, () => counters.increment('bench-memory'), async () => {
      const count = Number(await counters.get('bench-memory'));
      return count === settings.memory.increments ? 'count exact' : `COUNT WRONG: ${count}`;
    });
    await run(MEMORY_VARIANTS.transactions, settings.memory.transactions, 8, () => work.run(randomRow()), async () => 'all committed');
  } finally {
    await app.close();
  }
}

async function inTenths(
  variant: string,
  operations: number,
  callers: number,
  op: () => Promise<unknown>,
  gc: () => void,
  progress: (line: string) => void,
): Promise<MemoryReport> {
  const report: MemoryReport = { variant, operations, opsPerSec: 0, heapMiB: [], rssMiB: [] };
  let busyMs = 0;
  for (let part = 1; part <= 10; part++) {
    let remaining = Math.round((operations * part) / 10) - Math.round((operations * (part - 1)) / 10);
    const started = performance.now();
    await Promise.all(
      Array.from({ length: callers }, async () => {
        while (remaining > 0) {
          remaining--;
          await op();
        }
      }),
    );
    busyMs += performance.now() - started;
    gc();
    gc(); // a second pass frees what the first one's finalizers released
    const { heapUsed, rss } = process.memoryUsage();
    report.heapMiB.push(heapUsed / MiB);
    report.rssMiB.push(rss / MiB);
    progress(`${part * 10}%: heap ${(heapUsed / MiB).toFixed(1)} MiB, RSS ${(rss / MiB).toFixed(0)} MiB`);
  }
  report.opsPerSec = operations / (busyMs / 1000);
  return report;
}

/** "no growth" when the heap and RSS after the last tenth are within the slack of those after the first. */
export function leakVerdict(report: MemoryReport): string {
  const heapGrowth = report.heapMiB.at(-1)! - report.heapMiB[0]!;
  const rssGrowth = report.rssMiB.at(-1)! - report.rssMiB[0]!;
  const verdict = heapGrowth <= HEAP_SLACK_MIB && rssGrowth <= RSS_SLACK_MIB ? 'no growth' : 'GREW';
  const perOp = (heapGrowth * MiB) / (report.operations * 0.9);
  return `${verdict}: heap ${signed(heapGrowth)} MiB (${signed(perOp)} bytes/op), RSS ${signed(rssGrowth)} MiB from the first to the last tenth`;
}

function signed(value: number): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(1)}`;
}

// The bench runs as a plain `node` process; V8 can still hand out `gc` when the flag is set before use.
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
