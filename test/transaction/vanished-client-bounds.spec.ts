import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import pg from 'pg';
import { InvalidOptionError, Transactional, TransactionHost } from '../../lib/index.js';
import { validateModuleOptions } from '../../lib/txlock-options.validation.js';
import { computeBound } from '../../lib/transaction/vanished-client.js';
import { adminUrl, createTestDatabase, poolerUrl, setDatabaseDefaults, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';

const LIMITS = `SELECT current_setting('idle_in_transaction_session_timeout') AS idle, current_setting('tcp_keepalives_idle') AS keepalive,
  current_setting('server_version_num')::int AS version`;

@Injectable()
class Probe {
  constructor(private readonly tx: TransactionHost) {}

  @Transactional()
  async limits(): Promise<{ idle: string; keepalive: string; version: number }> {
    return (await this.tx.manager.query(LIMITS))[0];
  }

  /** A statement that runs longer than the bound, for real. */
  @Transactional()
  async sleep(seconds: number): Promise<number> {
    await this.tx.manager.query('SELECT pg_sleep($1)', [seconds]);
    return seconds;
  }
}

describe('the vanished-client bound: what each transaction sets, and what it leaves alone', () => {
  let db: TestDatabase;
  const apps: INestApplication[] = [];
  const probe = async (txlock: object): Promise<Probe> => {
    const app = await createTestApp({ url: db.url, providers: [Probe], txlock, poolSize: 2 });
    apps.push(app);
    return app.get(Probe);
  };

  beforeAll(async () => {
    db = await createTestDatabase();
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
    await db?.drop();
  });

  it('by default (60 s): idle_in_transaction_session_timeout and TCP keepalives LOCAL in every transaction', async () => {
    const { idle, keepalive } = await (await probe({})).limits();
    expect(idle).toBe('1min');
    // Over TCP the keepalive setting applies (a third of the bound); over a Unix socket PostgreSQL reports 0.
    expect(['20', '0']).toContain(keepalive);
  });

  it('vanishedClientTimeoutMs: false sends none of it', async () => {
    const { idle } = await (await probe({ vanishedClientTimeoutMs: false })).limits();
    expect(idle).toBe('0');
  });

  // Behind a pooler, its server connections opened before the database default changed would not show it.
  (poolerUrl() ? it.skip : it)("never loosens the server's own, shorter limit, even one set after the app started (a DBA's 5 s stays 5 s)", async () => {
    const app = await probe({ vanishedClientTimeoutMs: 30_000 });
    expect((await app.limits()).idle).toBe('30s');
    await setDatabaseDefaults(db.name, { idle_in_transaction_session_timeout: '5s' });
    try {
      // New connections get the database's new default (the app's pooled ones are ended); the bound, read against it
      // in the same statement, keeps it.
      const admin = new pg.Client({ connectionString: adminUrl() });
      await admin.connect();
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name]);
      await admin.end();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const { idle } = await app.limits();
      expect(idle).toBe('5s');
    } finally {
      await setDatabaseDefaults(db.name, { idle_in_transaction_session_timeout: '0' });
    }
  });

  it('a statement that runs longer than the bound is checked, found busy, and left to finish', async () => {
    const started = Date.now();
    await expect((await probe({ vanishedClientTimeoutMs: 1_000 })).sleep(2.5)).resolves.toBe(2.5);
    process.stdout.write(`[vanished client] a 2.5 s statement under a 1 s bound finished after ${Date.now() - started} ms\n`);
  });

  it('per server version: client_connection_check_interval and idle_session_timeout from PostgreSQL 14 on only', () => {
    const names = (entries: readonly (readonly [string, string])[]) => entries.map(([name]) => name);
    const on13 = computeBound(60_000, 13, true);
    expect(names(on13.transaction)).toEqual(['idle_in_transaction_session_timeout', 'tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count']);
    expect(names(on13.session)).toEqual(['tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count']);
    const on15 = computeBound(60_000, 15, true);
    expect(on15.transaction).toEqual([
      ['idle_in_transaction_session_timeout', '60000'],
      ['tcp_keepalives_idle', '20'],
      ['tcp_keepalives_interval', '6'],
      ['tcp_keepalives_count', '3'],
      ['client_connection_check_interval', '20000'],
    ]);
    expect(names(on15.session)[0]).toBe('idle_session_timeout');
  });

  it('refuses a bound out of range with the valid values', () => {
    for (const value of [999, 0, -1, 1.5, '60000', true, Number.POSITIVE_INFINITY]) {
      expect(() => validateModuleOptions({ vanishedClientTimeoutMs: value })).toThrow(InvalidOptionError);
    }
    expect(() => validateModuleOptions({ vanishedClientTimeoutMs: 999 })).toThrow(/false, or a whole number of milliseconds from 1000/);
    expect(() => validateModuleOptions({ vanishedClientTimeoutMs: false })).not.toThrow();
    expect(() => validateModuleOptions({ settings: { 'app.tenant_id': 'a' } })).toThrow(/a function of the call's context/);
  });
});
