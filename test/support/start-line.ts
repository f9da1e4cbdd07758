import type { DataSource } from 'typeorm';
import type { WorkerProcess } from './processes.js';

/**
 * Worker processes boot at their own pace (a Nest app takes a while on two cores); a race test needs them
 * to start together. Each worker says "ready" and waits at the start line; the test lets them go once all
 * are ready, with the start time (epoch ms) they share.
 */
export async function waitAtStartLine(dataSource: DataSource): Promise<number> {
  process.stdout.write('ready\n');
  for (;;) {
    const rows: { start_at: string }[] = await dataSource.query('SELECT start_at FROM txlock_start_line').catch(() => []);
    if (rows.length) return Number(rows[0]!.start_at);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Waits until every worker is ready, then starts them all `inMs` from now. Returns the start time. */
export async function startWorkers(dataSource: DataSource, workers: WorkerProcess[], inMs = 100): Promise<number> {
  await dataSource.query('CREATE TABLE IF NOT EXISTS txlock_start_line (start_at bigint NOT NULL)');
  await dataSource.query('TRUNCATE txlock_start_line');
  while (!workers.every((w) => w.stdout().includes('ready'))) {
    const failed = workers.find((w) => w.child.exitCode !== null);
    if (failed) await failed.result; // surfaces the worker's error instead of waiting forever
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const startAt = Date.now() + inMs;
  await dataSource.query('INSERT INTO txlock_start_line VALUES ($1)', [startAt]);
  return startAt;
}
