import type { DemoContext } from '../context.js';
import { succeeded } from '../http.js';
import { countRow, SAFE, type Row } from '../row.js';

const TICKS = 3;
/** Lead time so that every replica has the trigger before the tick: they then start within a few ms. */
const LEAD_MS = 250;

/**
 * The nightly job fires on every replica at the same tick, 3 ticks in a row: it must run once per tick,
 * not once per replica.
 */
export async function cronScenario({ http, db }: DemoContext): Promise<Row[]> {
  const replicas = http.replicas.length;
  const variants = [
    { path: 'naive', route: 'runs/unsafe', prefix: 'naive' },
    { path: `${SAFE} @AdvisoryLock skip`, route: 'runs', prefix: 'locked' },
  ];
  const rows: Row[] = [];
  for (const { path, route, prefix } of variants) {
    let ms = 0;
    let failed = 0;
    for (let tick = 1; tick <= TICKS; tick++) {
      const at = Date.now() + LEAD_MS;
      const burst = await http.burst(replicas, () => ({ method: 'POST', path: `/stats/${route}`, body: { tick: `demo-${prefix}-${tick}`, at } }));
      ms += burst.ms - LEAD_MS;
      failed += replicas - succeeded(burst.responses);
    }
    const { rows: [count] } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM stats_runs WHERE tick LIKE $1', [`demo-${prefix}-%`]);
    rows.push(
      countRow({
        feature: 'nightly @Cron: runs',
        path,
        requests: TICKS * replicas,
        ms,
        expected: TICKS,
        observed: count!.n,
        failed,
        words: { less: 'ticks missed', more: 'double runs' },
      }),
    );
  }
  return rows;
}
