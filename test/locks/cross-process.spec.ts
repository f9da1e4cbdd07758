import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { LockService } from '../../lib/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import { OverlapDetector } from '../support/overlap-detector.js';
import { runWorkers, spawnWorker } from '../support/processes.js';
import type { CriticalSectionInput } from './critical-section.worker.js';

const WORKER = 'test/locks/critical-section.worker.ts';
const PROCESSES = 4;
const ENTRIES = 250;

// Connections: 4 workers × (4 pool + 2 detector) + this file's app (4) + detector (2) = 30.
describe('advisory locks across OS processes', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let detector: OverlapDetector;
  let locks: LockService;

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ url: db.url, poolSize: 4 });
    locks = app.get(LockService);
    detector = await OverlapDetector.open(db.url, 2);
    await app.get(DataSource).query('CREATE TABLE cron_attempts (tick int NOT NULL, outcome text NOT NULL, pid int NOT NULL)');
  });
  afterAll(async () => {
    await detector?.close();
    await app?.close();
    await db?.drop();
  });

  it(`lets one caller at a time into @AdvisoryLock: ${PROCESSES} processes × ${ENTRIES} entries, 0 overlaps; without the lock they overlap`, async () => {
    await runWorkers(WORKER, db.url, PROCESSES, { mode: 'locked', entries: ENTRIES, label: 'locked' } satisfies CriticalSectionInput);
    await runWorkers(WORKER, db.url, PROCESSES, { mode: 'unlocked', entries: ENTRIES, label: 'unlocked' } satisfies CriticalSectionInput);
    const figures = {
      locked: { visits: await detector.visits('locked'), overlaps: await detector.overlaps('locked') },
      unlocked: { visits: await detector.visits('unlocked'), overlaps: await detector.overlaps('unlocked') },
    };
    console.log(`[locks] critical section, ${PROCESSES} processes × ${ENTRIES}: ${JSON.stringify(figures)}`);
    expect(figures.locked).toEqual({ visits: PROCESSES * ENTRIES, overlaps: 0 });
    expect(figures.unlocked.visits).toBe(PROCESSES * ENTRIES);
    expect(figures.unlocked.overlaps).toBeGreaterThan(0);
    // 2,000 transactions from 8 freshly started processes: 45-48 s in CI's lanes, 76 s once when both lanes ran it at once.
  }, 180_000);

  it('runs a cron-style job with onLocked: skip exactly once per tick across 4 processes', async () => {
    const ticks = 5;
    const ran = await runWorkers<number>(WORKER, db.url, PROCESSES, { mode: 'cron', ticks } satisfies CriticalSectionInput);
    const rows: { tick: number; runs: number; skips: number }[] = await app.get(DataSource).query(
      `SELECT tick, count(*) FILTER (WHERE outcome = 'ran')::int AS runs, count(*) FILTER (WHERE outcome = 'committed')::int AS commits, count(*) FILTER (WHERE outcome = 'skipped')::int AS skips
         FROM cron_attempts GROUP BY tick ORDER BY tick`,
    );
    expect(rows).toEqual(Array.from({ length: ticks }, (_, tick) => ({ tick, runs: 1, commits: 1, skips: PROCESSES - 1 })));
    expect(ran.reduce((a, b) => a + b, 0)).toBe(ticks);
  });

  it('releases transaction- and session-scope locks when the holding process is killed with SIGKILL', async () => {
    const victim = spawnWorker(WORKER, db.url, { mode: 'hold' } satisfies CriticalSectionInput);
    victim.result.catch(() => undefined);
    const granted = async (key: string) => (await locks.holders(key)).some((holder) => holder.granted);
    while (!(await granted('held-in-transaction')) || !(await granted('held-in-session'))) await new Promise((r) => setTimeout(r, 20));
    await expect(locks.tryAdvisoryLock('held-in-transaction', () => 'ran')).resolves.toEqual({ ran: false, reason: 'locked' });

    victim.child.kill('SIGKILL');
    await new Promise((resolve) => victim.child.once('close', resolve));

    // PostgreSQL ends the backends when their sockets close; waiting (bounded) for the locks proves it.
    await expect(locks.withAdvisoryLock('held-in-transaction', () => 'ran', { timeoutMs: 15_000 })).resolves.toBe('ran');
    await expect(locks.withAdvisoryLock('held-in-session', () => 'ran', { timeoutMs: 15_000 })).resolves.toBe('ran');
  });
});
