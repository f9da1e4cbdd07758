/** Label of the rows that must be exact; rows of the naive twins may show anything. */
export const SAFE = 'nestjs-txlock';

/** One line of the demo table. */
export interface Row {
  feature: string;
  /** `naive`, or `nestjs-txlock` followed by the API used. */
  path: string;
  requests: number;
  expected: string;
  observed: string;
  /** What went wrong, in words ("163 lost"), or "none". */
  difference: string;
  ms: number;
  /** Only meaningful on nestjs-txlock rows: the demo fails when one is false. */
  ok: boolean;
}

/** Words for an observed count below and above the expected one. */
export interface Words {
  less: string;
  more: string;
}

/**
 * A row that compares one count, plus requests that failed unexpectedly (5xx, network): a safe row is
 * ok only when the count is exact and nothing failed.
 */
export function countRow(
  fields: Pick<Row, 'feature' | 'path' | 'requests' | 'ms'> & {
    expected: number;
    observed: number;
    failed: number;
    words: Words;
    /** Other things this scenario found wrong, in words. */
    problems?: string[];
  },
): Row {
  const { expected, observed, failed, words } = fields;
  const parts: string[] = [];
  if (observed < expected) parts.push(`${expected - observed} ${words.less}`);
  if (observed > expected) parts.push(`${observed - expected} ${words.more}`);
  if (failed > 0) parts.push(plural(failed, 'request failed', 'requests failed'));
  parts.push(...(fields.problems ?? []));
  return {
    feature: fields.feature,
    path: fields.path,
    requests: fields.requests,
    ms: fields.ms,
    expected: String(expected),
    observed: String(observed),
    difference: parts.join(', ') || 'none',
    ok: parts.length === 0,
  };
}

/** "1 worker died" / "3 workers died". */
export function plural(count: number, one: string, many: string): string {
  return `${count} ${count === 1 ? one : many}`;
}
