import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { InvalidOptionError, SingleFlight, SingleFlightService } from '../../lib/index.js';
import { useTestApp } from '../support/test-app.js';

// The bounds are MAX_DURATION_MS and MAX_TIMER_MS (lib/common/durations.ts), spelled out so this file also
// runs against older code.
const HUNDRED_YEARS_MS = 3_155_760_000_000;
const MAX_TIMER_MS = 2_147_483_647;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let computations = 0;
const compute = async (value: unknown = 'computed') => {
  computations++;
  await sleep(50);
  return value;
};

@Injectable()
class Reports {
  @SingleFlight({ ttlMs: 60_000 })
  async byDefaultKey(day: string) {
    return compute(day);
  }

  @SingleFlight({ ttlMs: 60_000, key: (day: string) => ['report', day] })
  async byKeyParts(day: string) {
    return compute(day);
  }

  @SingleFlight({ ttlMs: 60_000, key: (day: string) => `report:${day}` })
  async byKeyText(day: string) {
    return compute(day);
  }
}

/** What a call gave: its value, { refused, mentions } for an InvalidOptionError (or subclass), else the error's class. */
async function outcome(call: () => unknown, mentions: RegExp): Promise<unknown> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof InvalidOptionError) return { refused: true, mentions: mentions.test(error.message) };
    return (error as Error).constructor.name;
  }
}
const refused = { refused: true, mentions: true };

describe('single-flight keys, namespaces and durations', () => {
  const testApp = useTestApp({ providers: [Reports], txlock: { singleFlight: { autoCreate: true } } });
  let flights: SingleFlightService;
  let reports: Reports;

  beforeAll(() => {
    flights = testApp.get(SingleFlightService);
    reports = testApp.get(Reports);
  });
  beforeEach(() => {
    computations = 0;
  });

  it('refuses keys and namespaces with lone surrogates, as counter keys, lock keys and lease names are refused', async () => {
    expect({
      runKey: await outcome(() => flights.run('\uD800', compute, { ttlMs: 60_000 }), /well-formed/),
      runNamespace: await outcome(() => flights.run('k', compute, { ttlMs: 60_000, namespace: '\uDBFF' }), /well-formed/),
      decoratorKey: await outcome(() => SingleFlight({ ttlMs: 60_000, key: 'a\uDC00' }), /well-formed/),
      decoratorNamespace: await outcome(() => SingleFlight({ ttlMs: 60_000, namespace: '\uD800' }), /well-formed/),
      defaultKeyArgument: await outcome(() => reports.byDefaultKey('\uD800'), /well-formed/),
      keyParts: await outcome(() => reports.byKeyParts('\uDBFF'), /well-formed/),
      keyText: await outcome(() => reports.byKeyText('\uDBFF'), /well-formed/),
    }).toEqual({
      runKey: refused,
      runNamespace: refused,
      decoratorKey: refused,
      decoratorNamespace: refused,
      defaultKeyArgument: refused,
      keyParts: refused,
      keyText: refused,
    });
    expect(computations).toBe(0);
  });

  it('bounds ttlMs at 100 years (MAX_DURATION_MS)', async () => {
    expect({
      maxSafe: await outcome(() => flights.run('far', compute, { ttlMs: Number.MAX_SAFE_INTEGER }), /MAX_DURATION_MS/),
      justOver: await outcome(() => flights.run('far', compute, { ttlMs: HUNDRED_YEARS_MS + 1 }), /MAX_DURATION_MS/),
      decorator: await outcome(() => (SingleFlight({ ttlMs: HUNDRED_YEARS_MS + 1 }), 'a decorator'), /MAX_DURATION_MS/),
    }).toEqual({ maxSafe: refused, justOver: refused, decorator: refused });
    expect(computations).toBe(0);
    expect(await flights.run('far', compute, { ttlMs: HUNDRED_YEARS_MS })).toBe('computed');
    const [{ years }] = await testApp.dataSource.query(
      `SELECT round(extract(epoch FROM expires_at - clock_timestamp()) / 31557600) AS years FROM txlock_single_flight WHERE key = $1`,
      [JSON.stringify(['', 'far'])],
    );
    expect(Number(years)).toBe(100);
  });

  it('bounds timeoutMs at 2^31-1 ms (MAX_TIMER_MS): a longer timer would give up after 1 ms', async () => {
    expect(await outcome(() => flights.run('slow', compute, { ttlMs: 60_000, timeoutMs: MAX_TIMER_MS + 1 }), /MAX_TIMER_MS/)).toEqual(refused);
    expect(computations).toBe(0);
    expect(await flights.run('slow', compute, { ttlMs: 60_000, timeoutMs: MAX_TIMER_MS })).toBe('computed');
  });

  it('takes NUL in keys, namespaces and values: they are stored JSON-encoded, which escapes it', async () => {
    const value = { text: 'a\u0000b' };
    const options = { ttlMs: 60_000, namespace: 'n\u0000s' };
    expect(await flights.run('k\u0000ey', () => compute(value), options)).toEqual(value);
    expect(await flights.run('k\u0000ey', () => compute('again'), options)).toEqual(value); // from the table
    expect(await flights.run('k\u0000ey', () => compute('other'), { ttlMs: 60_000, namespace: 'n' })).toBe('other');
    expect(computations).toBe(2);
  });
});
