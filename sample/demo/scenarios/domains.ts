import type { DemoContext } from '../context.js';
import { succeeded } from '../http.js';
import { countRow, plural, SAFE, type Row } from '../row.js';

const WORKERS = 8;
const NAMES = 1_000;
const BATCH = 250;

/**
 * Seed 004's import: 8 workers at once, each with a batch of 250 names that overlaps its neighbours'
 * (every name is in two batches). All 1000 names must end up stored once, and no worker may fail.
 */
export async function domainsScenario({ http, db }: DemoContext): Promise<Row[]> {
  const variants = [
    { path: 'naive', route: 'import/unsafe', prefix: 'naive' },
    { path: `${SAFE} bulkGetOrCreate`, route: 'import', prefix: 'bulk' },
    { path: `${SAFE} @TableLock`, route: 'import/table-lock', prefix: 'locked' },
  ];
  const rows: Row[] = [];
  for (const { path, route, prefix } of variants) {
    const batch = (worker: number): string[] =>
      Array.from({ length: BATCH }, (_, i) => `${prefix}-${(worker * (NAMES / WORKERS) + i) % NAMES}.example`);
    const { responses, ms } = await http.burst(WORKERS, (w) => ({ method: 'POST', path: `/domains/${route}`, body: { names: batch(w) } }));
    const { rows: [count] } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM domains WHERE name LIKE $1', [`${prefix}-%`]);
    const failed = WORKERS - succeeded(responses);
    rows.push(
      countRow({
        feature: 'domains import: rows',
        path,
        requests: WORKERS,
        ms,
        expected: NAMES,
        observed: count!.n,
        failed: 0,
        words: { less: 'missing', more: 'duplicated' },
        problems: failed > 0 ? [plural(failed, 'worker died', 'workers died')] : [],
      }),
    );
  }
  return rows;
}
