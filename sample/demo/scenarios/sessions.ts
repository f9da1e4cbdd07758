import type { DemoContext } from '../context.js';
import { succeeded } from '../http.js';
import { countRow, SAFE, type Row } from '../row.js';

const CALLERS = 100;

/** 100 requests get-or-create the session of one client key at once: one row, not one per request. */
export async function sessionsScenario({ http, db }: DemoContext): Promise<Row[]> {
  const variants = [
    { path: 'naive', suffix: '/unsafe', table: 'sessions_without_unique' },
    { path: `${SAFE} getOrCreate`, suffix: '', table: 'sessions' },
  ];
  const rows: Row[] = [];
  for (const { path, suffix, table } of variants) {
    const key = `browser-${path.split(' ')[0]}`;
    const { responses, ms } = await http.burst(CALLERS, () => ({ method: 'POST', path: `/sessions/${key}${suffix}` }));
    // The table name is one of the two constants above, never input.
    const { rows: [count] } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE client_key = $1`, [key]);
    const ids = new Set(responses.map((r) => (r.body as { id?: string } | undefined)?.id));
    rows.push(countRow({
      feature: 'session get-or-create',
      path,
      requests: CALLERS,
      ms,
      expected: 1,
      observed: count!.n,
      failed: CALLERS - succeeded(responses),
      words: { less: 'missing', more: 'duplicated' },
      // Every caller must also have been handed the one session, not a row of its own.
      problems: ids.size === 1 ? [] : [`${ids.size} different ids handed out`],
    }));
  }
  return rows;
}
