import type { DemoContext } from '../context.js';
import { succeeded } from '../http.js';
import { countRow, SAFE, type Row } from '../row.js';

const TICKS = 5;
/** Each tick fires the job on this many "replicas" (schedulers), alternating between the two processes. */
const SCHEDULERS = 4;
/** Their timers fire up to this late (clock skew, a slow start, a GC pause). */
const SPREAD_MS = 300;
/** Lead time so that every scheduler has its trigger before the tick. */
const LEAD_MS = 250;
/** Longer than the lease's atLeastFor (1 s) plus the spread, so each tick is a fresh one. */
const TICK_PERIOD_MS = 1_500;

/**
 * The nightly job fires on 4 schedulers per tick, up to 300 ms apart, 5 ticks: it must run once per
 * tick. The 10 ms job is done before most late schedulers fire, so "skip while locked" (@AdvisoryLock)
 * runs it again; the lease (@ScheduledLock) stays taken for 1 s and does not.
 */
export async function cronScenario({ http, db }: DemoContext): Promise<Row[]> {
  const variants = [
    { path: 'naive', route: 'runs/unsafe', prefix: 'naive' },
    // Not a nestjs-txlock row: the wrong tool for "once per tick", shown to explain why leases exist.
    { path: 'control: @AdvisoryLock skip', route: 'runs/advisory', prefix: 'advisory' },
    { path: `${SAFE} @ScheduledLock`, route: 'runs', prefix: 'leased' },
  ];
  const run = `${Date.now()}`;
  // The three run at once (separate routes, ticks and locks), so the section takes one variant's time, not three.
  return Promise.all(variants.map(async ({ path, route, prefix }): Promise<Row> => {
    let failed = 0;
    const started = performance.now();
    for (let tick = 1; tick <= TICKS; tick++) {
      const tickAt = Date.now() + LEAD_MS;
      const burst = await http.burst(SCHEDULERS, () => ({
        method: 'POST',
        path: `/stats/${route}`,
        body: { tick: `demo-${run}-${prefix}-${tick}`, at: Math.round(tickAt + Math.random() * SPREAD_MS) },
      }));
      failed += SCHEDULERS - succeeded(burst.responses);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, tickAt + TICK_PERIOD_MS - Date.now())));
    }
    const { rows: [count] } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM stats_runs WHERE tick LIKE $1', [`demo-${run}-${prefix}-%`]);
    return countRow({
      feature: 'nightly @Cron: runs',
      path,
      requests: TICKS * SCHEDULERS,
      ms: performance.now() - started,
      expected: TICKS,
      observed: count!.n,
      failed,
      words: { less: 'ticks missed', more: 'double runs' },
    });
  }));
}
