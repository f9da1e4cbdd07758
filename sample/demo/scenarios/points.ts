import { POINTS_PER_AWARD } from '../../src/points/calculate-points.js';
import type { DemoContext } from '../context.js';
import { succeeded } from '../http.js';
import { countRow, SAFE, type Row } from '../row.js';

const AWARDS = 100;

/** 100 concurrent awards of 10 points to one user: 1000 points (seed 003's `user.points += x; save()`). */
export async function pointsScenario({ http, db }: DemoContext): Promise<Row[]> {
  const variants = [
    { path: 'naive', suffix: '/unsafe' },
    { path: `${SAFE} @AdvisoryLock`, suffix: '' },
    { path: `${SAFE} incrementColumn`, suffix: '/increment' },
  ];
  const rows: Row[] = [];
  for (const { path, suffix } of variants) {
    const user = await http.expectOk<{ id: number }>({ method: 'POST', path: '/users', body: { name: `demo (${path})` } });
    const { responses, ms } = await http.burst(AWARDS, () => ({ method: 'POST', path: `/users/${user.id}/points${suffix}` }));
    const { rows: [found] } = await db.query<{ points: number }>('SELECT points FROM users WHERE id = $1', [user.id]);
    rows.push(
      countRow({
        feature: `points += ${POINTS_PER_AWARD}`,
        path,
        requests: AWARDS,
        ms,
        expected: AWARDS * POINTS_PER_AWARD,
        observed: found!.points,
        failed: AWARDS - succeeded(responses),
        words: { less: 'points lost', more: 'points extra' },
      }),
    );
  }
  return rows;
}
