import type { DemoContext } from '../context.js';
import { succeeded } from '../http.js';
import { countRow, SAFE, type Row } from '../row.js';

const REQUESTS = 100;

/**
 * Seed 001: 100 concurrent requests for one expensive summary, across both replicas. The naive endpoint
 * computes it for every request; @SingleFlight computes it once and shares it.
 */
export async function summaryScenario({ http }: DemoContext): Promise<Row[]> {
  const variants = [
    { path: 'naive', suffix: '/unsafe', scope: `naive-${Date.now()}` },
    { path: `${SAFE} @SingleFlight`, suffix: '', scope: `single-${Date.now()}` },
  ];
  const rows: Row[] = [];
  for (const { path, suffix, scope } of variants) {
    const burst = await http.burst(REQUESTS, () => ({ method: 'GET', path: `/stats/summary/${scope}${suffix}` }));
    const same = new Set(burst.responses.map((r) => JSON.stringify(r.body))).size === 1;
    const { computations } = await http.expectOk<{ computations: number }>({ method: 'GET', path: `/stats/summary/${scope}/computations` });
    rows.push(
      countRow({
        feature: 'expensive summary: computations',
        path,
        requests: REQUESTS,
        ms: burst.ms,
        expected: 1,
        observed: computations,
        failed: REQUESTS - succeeded(burst.responses),
        words: { less: 'never computed', more: 'computed again' },
        problems: same ? [] : ['answers differ'],
      }),
    );
  }
  return rows;
}
