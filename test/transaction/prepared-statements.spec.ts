import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type pg from 'pg';
import { Column, Entity, PrimaryGeneratedColumn, type DataSource } from 'typeorm';
import { AtomicService, CounterService, TransactionHost } from '../../lib/index.js';
import { race } from '../../lib/testing/race.js';
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

@Entity('planned_item')
class PlannedItem {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', unique: true })
  k!: string;

  @Column({ type: 'int', default: 0 })
  v!: number;
}

const PLANNED_TABLE = `(id serial PRIMARY KEY, k text NOT NULL UNIQUE, v int NOT NULL DEFAULT 0, note text)`;

// Online migrations that change what `SELECT *` / `RETURNING *` of get-or-create gives, while the statement is prepared
// on every pooled connection: PostgreSQL then refuses it ("cached plan must not change result type") before running it.
const MIGRATIONS: [string, (dataSource: DataSource) => Promise<unknown>][] = [
  ['ALTER TABLE ... ADD COLUMN', (dataSource) => dataSource.query('ALTER TABLE planned_item ADD COLUMN note text')],
  ['ALTER TABLE ... ALTER COLUMN ... TYPE', (dataSource) => dataSource.query('ALTER TABLE planned_item ALTER COLUMN v TYPE bigint')],
  ['DROP TABLE and CREATE TABLE with a column more', (dataSource) => dataSource.query(`DROP TABLE planned_item; CREATE TABLE planned_item ${PLANNED_TABLE}`)],
  [
    'a search_path that finds another table of that name first',
    async (dataSource) => {
      await dataSource.query(`CREATE SCHEMA tenant; CREATE TABLE tenant.planned_item ${PLANNED_TABLE}`);
      // Session state on the pooled connections, as an app's own SET (or a pooler's connect query) leaves it.
      await onEveryConnection(dataSource, (client) => client.query('SET search_path = tenant, public'));
    },
  ],
];

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

  (direct ? describe.each(MIGRATIONS) : describe.skip.each(MIGRATIONS))('after a schema change under them: %s', (_, migrate) => {
    const testApp = useTestApp({ entities: [PlannedItem], poolSize: POOL_SIZE });

    it('fails no call: a statement whose plan no longer fits is sent again unnamed, once, having run nothing', async () => {
      const atomic = testApp.get(AtomicService);
      const getOrCreateConcurrently = async (round: string) => race(POOL_SIZE * 2, (i) => atomic.getOrCreate(PlannedItem, { k: `${round}-${i}` }));
      for (let round = 0; round < 5; round++) expect((await getOrCreateConcurrently(`warm-${round}`)).errors).toEqual([]);
      const prepared = (await preparedStatements(testApp.dataSource)).filter((row) => /planned_item/.test(row.statement));
      expect(prepared.length).toBeGreaterThanOrEqual(POOL_SIZE);

      await migrate(testApp.dataSource);
      for (let round = 0; round < 5; round++) {
        const { values, errors } = await getOrCreateConcurrently(`after-${round}`);
        expect(errors).toEqual([]);
        expect(values.map((r) => r.created)).toEqual(Array(POOL_SIZE * 2).fill(true));
      }
      const [{ n }] = await testApp.dataSource.query(`SELECT count(*)::int AS n FROM planned_item WHERE k LIKE 'after-%'`);
      expect(n).toBe(5 * POOL_SIZE * 2);
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
