import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import { Transactional, TransactionHost, WeakerIsolationError } from '../../lib/index.js';
import pg from 'pg';
import { adminUrl, createTestDatabase, expectAllReleased, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import { RoundTripLog } from '../support/round-trips.js';
import { useTestApp } from '../support/test-app.js';

const level = async (manager: { query(sql: string): Promise<unknown> }): Promise<string> =>
  ((await manager.query(`SELECT current_setting('transaction_isolation') AS level`)) as { level: string }[])[0]!.level;

/** A service written for plain TypeORM: SERIALIZABLE keeps "at least one doctor on call" (write skew otherwise). */
@Injectable()
class OnCall {
  constructor(readonly ds: DataSource) {}

  async goOffCall(name: string, bothRead: () => Promise<void>): Promise<string> {
    return this.ds.transaction('SERIALIZABLE', async (manager: EntityManager) => {
      const [{ n }] = (await manager.query(`SELECT count(*)::int AS n FROM doctor WHERE on_call`)) as { n: number }[];
      await bothRead();
      if (n < 2) return 'refused';
      await manager.query(`UPDATE doctor SET on_call = false WHERE name = $1`, [name]);
      return 'went off call';
    });
  }

  @Transactional()
  wrapped(name: string, bothRead: () => Promise<void>): Promise<string> {
    return this.goOffCall(name, bothRead);
  }

  @Transactional({ isolation: 'SERIALIZABLE' })
  async serializableJoin(): Promise<string> {
    return level(this.ds);
  }
}

// A call that asks for a stronger isolation than the transaction it runs in never runs weaker without a word (r23):
// it raises the transaction's level while nothing has been sent in it, and is refused afterwards.
describe('isolation asked for inside a transaction', () => {
  const testApp = useTestApp({ providers: [OnCall], poolSize: 6 });
  let tx: TransactionHost;
  let onCall: OnCall;

  beforeAll(async () => {
    tx = testApp.get(TransactionHost);
    onCall = testApp.get(OnCall);
    await testApp.dataSource.query('CREATE TABLE doctor (name text PRIMARY KEY, on_call boolean NOT NULL)');
  });
  beforeEach(() => testApp.dataSource.query(`TRUNCATE doctor; INSERT INTO doctor VALUES ('alice', true), ('bob', true)`));

  it("dataSource.transaction('SERIALIZABLE') and startTransaction('SERIALIZABLE') first thing in a transaction run it at SERIALIZABLE", async () => {
    const ds = testApp.dataSource;
    expect(await tx.run(() => ds.transaction('SERIALIZABLE', level))).toBe('serializable');
    const viaRunner = await tx.run(async () => {
      const runner = ds.createQueryRunner();
      await runner.startTransaction('SERIALIZABLE');
      const seen = await level(runner);
      await runner.commitTransaction();
      await runner.release();
      return seen;
    });
    expect(viaRunner).toBe('serializable');
    expect(await tx.run(() => onCall.serializableJoin())).toBe('serializable');
    expect(await tx.run(() => tx.run({ propagation: 'NESTED', isolation: 'REPEATABLE READ' }, () => level(ds)))).toBe('repeatable read');
  });

  it('keeps the invariant the SERIALIZABLE code relies on when a caller wraps it in @Transactional(): write skew fails', async () => {
    let arrived = 0;
    let release!: () => void;
    const both = new Promise<void>((resolve) => (release = resolve));
    const bothRead = async () => {
      if (++arrived === 2) release();
      await both;
    };
    const outcomes = await Promise.allSettled([onCall.wrapped('alice', bothRead), onCall.wrapped('bob', bothRead)]);
    const [{ n }] = (await testApp.dataSource.query(`SELECT count(*)::int AS n FROM doctor WHERE on_call`)) as { n: number }[];
    expect(n).toBe(1);
    expect(outcomes.filter((outcome) => outcome.status === 'rejected')).toHaveLength(1);
    await expectAllReleased(testApp.dataSource);
  });

  it('once the transaction has sent a statement, a stronger level is refused with WeakerIsolationError, and nothing is sent for it', async () => {
    const ds = testApp.dataSource;
    const log = RoundTripLog.attach(ds);
    const refusals = await tx.run(async () => {
      await ds.query('SELECT 1');
      const seen = [
        await ds.transaction('SERIALIZABLE', level).catch((error: unknown) => error),
        await ds.manager.transaction('REPEATABLE READ', level).catch((error: unknown) => error),
        await tx.manager.transaction('SERIALIZABLE', level).catch((error: unknown) => error),
        await onCall.serializableJoin().catch((error: unknown) => error),
        await tx.run({ propagation: 'NESTED', isolation: 'SERIALIZABLE' }, () => level(ds)).catch((error: unknown) => error),
      ];
      const runner = ds.createQueryRunner();
      seen.push(await runner.startTransaction('SERIALIZABLE').catch((error: unknown) => error));
      seen.push(await tx.queryRunner!.startTransaction('SERIALIZABLE').catch((error: unknown) => error));
      await runner.release();
      return seen;
    });
    log.stop();
    for (const refusal of refusals) {
      expect(refusal).toBeInstanceOf(WeakerIsolationError);
      expect((refusal as WeakerIsolationError).current).toBe('READ COMMITTED');
    }
    expect((refusals[0] as Error).message).toMatch(/@Transactional\(\{ isolation: 'SERIALIZABLE' \}\)/);
    expect(log.sent).toEqual(['BEGIN', 'SELECT 1', 'COMMIT']);
  });

  it('a level at least as strong as the transaction asks nothing more', async () => {
    const ds = testApp.dataSource;
    const seen = await tx.run({ isolation: 'SERIALIZABLE' }, async () => {
      await ds.query('SELECT 1');
      return [await ds.transaction('READ COMMITTED', level), await ds.transaction('SERIALIZABLE', level)];
    });
    expect(seen).toEqual(['serializable', 'serializable']);
  });
});

describe('isolation asked for inside a transaction, on a database whose default is REPEATABLE READ', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
    const admin = new pg.Client({ connectionString: adminUrl() });
    await admin.connect();
    await admin.query(`ALTER DATABASE "${db.name}" SET default_transaction_isolation = 'repeatable read'`);
    await admin.end();
  });
  afterAll(() => db?.drop());

  it('compares with what the server really runs (read at bootstrap)', async () => {
    const app = await createTestApp({ url: db.url, poolSize: 3 });
    try {
      const tx = app.get(TransactionHost);
      const ds = app.get(DataSource);
      const seen = await tx.run(async () => {
        await ds.query('SELECT 1');
        return [await ds.transaction('REPEATABLE READ', level), await ds.transaction('SERIALIZABLE', level).catch((error: unknown) => error)];
      });
      expect(seen[0]).toBe('repeatable read');
      expect(seen[1]).toBeInstanceOf(WeakerIsolationError);
      expect((seen[1] as WeakerIsolationError).current).toBe('REPEATABLE READ');
    } finally {
      await app.close();
    }
  });
});
