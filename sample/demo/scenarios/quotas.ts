import type { DemoContext } from '../context.js';
import { succeeded, withStatus } from '../http.js';
import { countRow, SAFE, type Row } from '../row.js';

const REQUESTS = 300;

/** 300 concurrent requests against a daily quota of 100: exactly 100 accepted, 200 refused with 429. */
export async function quotasScenario({ http }: DemoContext): Promise<Row[]> {
  // The replicas' QUOTA_PER_DAY (100 unless the environment says otherwise).
  const { limit } = await http.expectOk<{ limit: number }>({ method: 'GET', path: '/quotas/nobody' });
  const variants = [
    { path: 'naive', suffix: '/unsafe' },
    { path: `${SAFE} tryIncrement`, suffix: '' },
  ];
  const rows: Row[] = [];
  for (const { path, suffix } of variants) {
    const user = `quota-${path.split(' ')[0]}`;
    const { responses, ms } = await http.burst(REQUESTS, () => ({ method: 'POST', path: `/quotas/${user}/requests${suffix}` }));
    const accepted = succeeded(responses);
    rows.push(
      countRow({
        feature: `quota ${limit}/day: accepted`,
        path,
        requests: REQUESTS,
        ms,
        expected: limit,
        observed: accepted,
        // A refusal must be a 429; anything else (500, network) is a failure.
        failed: REQUESTS - accepted - withStatus(responses, 429),
        words: { less: 'under quota', more: 'over quota' },
      }),
    );
  }
  return rows;
}
