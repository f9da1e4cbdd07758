import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { InvalidOptionError, LockService, Transactional, TransactionHost, type TransactionOptions } from '../../lib/index.js';
import { openingStatements } from '../../lib/transaction/transaction.sql.js';
import { useTestApp } from '../support/test-app.js';

const options: TransactionOptions = { isolation: 'SERIALIZABLE', timeoutMs: 1_000 };

@Injectable()
class Report {
  constructor(private readonly tx: TransactionHost) {}

  @Transactional(options)
  async run(): Promise<string> {
    const [row] = await this.tx.manager.query(`SELECT current_setting('transaction_isolation') AS isolation`);
    return row.isolation as string;
  }
}

// Values that travel in a simple-protocol batch (BEGIN's isolation and timeout, lock timeouts) are checked when
// the SQL is built, on every call: never by a cache keyed on the options object, which a caller can change later.
describe('options changed after their first use', () => {
  const testApp = useTestApp({ providers: [Report] });
  let tx: TransactionHost;
  let dataSource: DataSource;
  const victimExists = async () => ((await dataSource.query(`SELECT to_regclass('public.victim') IS NOT NULL AS e`)) as { e: boolean }[])[0]!.e;

  beforeAll(() => {
    tx = testApp.get(TransactionHost);
    dataSource = testApp.dataSource;
  });
  beforeEach(() => dataSource.query('CREATE TABLE IF NOT EXISTS victim (x int)'));

  it('TransactionHost.run(): a timeoutMs or isolation changed to SQL after the first call is refused, and nothing runs', async () => {
    const mutable: Record<string, unknown> = { timeoutMs: 1_000 };
    await tx.run(mutable as TransactionOptions, () => tx.manager.query('SELECT 1'));
    mutable.timeoutMs = '1; DROP TABLE victim';
    await expect(tx.run(mutable as TransactionOptions, () => tx.manager.query('SELECT 1'))).rejects.toBeInstanceOf(InvalidOptionError);

    const isolation: Record<string, unknown> = { isolation: 'SERIALIZABLE' };
    await tx.run(isolation as TransactionOptions, () => tx.manager.query('SELECT 1'));
    isolation.isolation = 'SERIALIZABLE; DROP TABLE victim; --';
    await expect(tx.run(isolation as TransactionOptions, () => tx.manager.query('SELECT 1'))).rejects.toBeInstanceOf(InvalidOptionError);
    expect(await victimExists()).toBe(true);
  });

  it("@Transactional(): the decorator's options object changed after decoration is checked again on the next call", async () => {
    const report = testApp.get(Report);
    expect(await report.run()).toBe('serializable');
    (options as Record<string, unknown>).isolation = 'SERIALIZABLE; DROP TABLE victim; --';
    await expect(report.run()).rejects.toBeInstanceOf(InvalidOptionError);
    (options as Record<string, unknown>).isolation = 'SERIALIZABLE';
    (options as Record<string, unknown>).timeoutMs = '1; DROP TABLE victim';
    await expect(report.run()).rejects.toBeInstanceOf(InvalidOptionError);
    expect(await victimExists()).toBe(true);
  });

  it('an option read twice cannot answer differently the second time: each is read once, checked, and used as read', async () => {
    let reads = 0;
    const shifty = {
      get isolation() {
        return reads++ === 0 ? 'REPEATABLE READ' : 'SERIALIZABLE; DROP TABLE victim; --';
      },
    } as unknown as TransactionOptions;
    const isolation = await tx.run(shifty, async () => {
      const [row] = await tx.manager.query(`SELECT current_setting('transaction_isolation') AS isolation`);
      return row.isolation as string;
    });
    expect(isolation).toBe('repeatable read');
    expect(await victimExists()).toBe(true);
  });

  it('LockService: a lock timeoutMs changed to SQL after the first call is refused', async () => {
    const locks = testApp.get(LockService);
    const lockOptions: Record<string, unknown> = { timeoutMs: 100 };
    await tx.run(() => locks.withAdvisoryLock('toctou', async () => 'ran', lockOptions));
    lockOptions.timeoutMs = '1; DROP TABLE victim';
    await expect(tx.run(() => locks.withAdvisoryLock('toctou', async () => 'ran', lockOptions))).rejects.toBeInstanceOf(InvalidOptionError);
    expect(await victimExists()).toBe(true);
  });

  it('the BEGIN batch builder itself refuses anything but the fixed keywords and safe integers', () => {
    expect(openingStatements('SERIALIZABLE', true, 50)).toEqual(['BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY', 'SET LOCAL statement_timeout = 50']);
    expect(() => openingStatements('SERIALIZABLE; DROP TABLE victim' as never, false, undefined)).toThrow(InvalidOptionError);
    expect(() => openingStatements('toString' as never, false, undefined)).toThrow(InvalidOptionError);
    for (const timeout of ['1; DROP TABLE victim', 1.5, Number.NaN, 2n, 2 ** 53, 0]) {
      expect(() => openingStatements(undefined, false, timeout as never)).toThrow(InvalidOptionError);
    }
  });
});
