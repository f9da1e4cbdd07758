import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type pg from 'pg';
import type { DataSource } from 'typeorm';
import { CounterService, TransactionHost } from '../../lib/index.js';
import { poolerUrl, poolOf } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';

const POOL_SIZE = 3;
const direct = poolerUrl() === undefined;

interface PreparedRow {
  name: string;
  statement: string;
  runs: number;
}

/** Runs `fn` on every pooled connection at once (all of them checked out together), and returns what each gave. */
async function onEveryConnection<T>(dataSource: DataSource, fn: (client: pg.PoolClient) => Promise<T>): Promise<T[]> {
  const pool = poolOf(dataSource);
  const clients = await Promise.all(Array.from({ length: POOL_SIZE }, () => pool.connect()));
  try {
    return await Promise.all(clients.map(fn));
  } finally {
    for (const client of clients) client.release();
  }
}

/** The statements the library prepared on the pooled connections, with how often each ran (generic + custom plans). */
async function preparedStatements(dataSource: DataSource): Promise<PreparedRow[]> {
  const perConnection = await onEveryConnection(dataSource, async (client) => {
    const { rows } = await client.query<PreparedRow>(
      `SELECT name, statement, (generic_plans + custom_plans)::int AS runs FROM pg_prepared_statements WHERE name LIKE 'txlock\\_%'`,
    );
    return rows;
  });
  return perConnection.flat();
}

const runsOf = (rows: PreparedRow[], pattern: RegExp) => rows.filter((row) => pattern.test(row.statement)).reduce((sum, row) => sum + row.runs, 0);
const COUNTER_ADD = /^INSERT INTO "txlock_counters" AS c \("key", "value"\) VALUES/;

async function incrementConcurrently(counters: CounterService, key: string, times: number): Promise<number[]> {
  return Promise.all(Array.from({ length: times }, async () => Number(await counters.increment(key))));
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe('the library prepares its own statements outside transactions, on a direct connection only', () => {
  describe('by default', () => {
    const testApp = useTestApp({ txlock: { autoCreate: true, counters: { coalesce: false } }, poolSize: POOL_SIZE });

    it(
      direct
        ? 'prepares each statement once per pooled connection and runs every call through it; never inside a transaction'
        : 'prepares nothing when the bootstrap connection went through a pooler',
      async () => {
        const counters = testApp.get(CounterService);
        const tx = testApp.get(TransactionHost);
        const values = await incrementConcurrently(counters, 'likes', 200);
        expect(values.sort((a, b) => a - b)).toEqual(range(200));
        await tx.run(async () => {
          for (let i = 0; i < 10; i++) await counters.increment('likes');
        });
        expect(Number(await counters.get('likes'))).toBe(210);

        const prepared = await preparedStatements(testApp.dataSource);
        if (!direct) {
          expect(prepared).toEqual([]);
          return;
        }
        // Every one of the 200 increments outside the transaction ran the prepared statement; the 10 inside did not.
        expect(runsOf(prepared, COUNTER_ADD)).toBe(200);
        // One name per statement text, the same on every connection that prepared it.
        const names = new Map<string, Set<string>>();
        for (const row of prepared) names.set(row.statement, (names.get(row.statement) ?? new Set()).add(row.name));
        for (const set of names.values()) expect(set.size).toBe(1);
      },
    );
  });

  describe.each([
    ['preparedStatements: false', { preparedStatements: false }],
    ["pooler: 'transaction'", { pooler: 'transaction' as const }],
    ["pooler: 'session'", { pooler: 'session' as const }],
  ])('with %s', (_, options) => {
    const testApp = useTestApp({ txlock: { autoCreate: true, counters: { coalesce: false }, ...options }, poolSize: POOL_SIZE });

    it('prepares nothing, and counts exactly', async () => {
      const counters = testApp.get(CounterService);
      expect((await incrementConcurrently(counters, 'likes', 50)).sort((a, b) => a - b)).toEqual(range(50));
      expect(await preparedStatements(testApp.dataSource)).toEqual([]);
    });
  });

  (direct ? describe : describe.skip)('when the server loses them anyway (a pooler the bootstrap check did not see)', () => {
    const testApp = useTestApp({ txlock: { autoCreate: true, counters: { coalesce: false } }, poolSize: POOL_SIZE });
    afterEach(() => {
      jest.restoreAllMocks();
    });

    it('sends each failed call again unnamed, warns once, and names no later call', async () => {
      const counters = testApp.get(CounterService);
      const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      await incrementConcurrently(counters, 'hits', 30);
      expect(runsOf(await preparedStatements(testApp.dataSource), COUNTER_ADD)).toBe(30);
      // What a pooler does to a client: its next statement reaches a server connection that never prepared it.
      await onEveryConnection(testApp.dataSource, (client) => client.query('DEALLOCATE ALL'));

      const values = await incrementConcurrently(counters, 'hits', 60);
      expect(values.sort((a, b) => a - b)).toEqual(range(90).slice(30));
      expect(warn.mock.calls.filter(([message]) => /no longer prepared/.test(String(message)))).toHaveLength(1);
      // Calls already named and waiting for a connection when the first one failed may prepare it again; later ones are unnamed.
      const runs = runsOf(await preparedStatements(testApp.dataSource), COUNTER_ADD);
      expect((await incrementConcurrently(counters, 'hits', 30)).sort((a, b) => a - b)).toEqual(range(120).slice(90));
      expect(runsOf(await preparedStatements(testApp.dataSource), COUNTER_ADD)).toBe(runs);
      expect(Number(await counters.get('hits'))).toBe(120);
    });
  });
});
