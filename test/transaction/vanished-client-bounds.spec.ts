import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { InvalidOptionError, Transactional, TransactionHost } from '../../lib/index.js';
import { validateModuleOptions } from '../../lib/txlock-options.validation.js';
import { computeBound } from '../../lib/transaction/vanished-client.js';
import { adminUrl, createTestDatabase, poolerUrl, poolOf, setDatabaseDefaults, type TestDatabase } from '../support/database.js';
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

  @Transactional()
  async failing(): Promise<void> {
    await this.tx.manager.query('SELECT 1');
    throw new Error('rolled back');
  }

  /** A statement fails and the method goes on: PostgreSQL answers its COMMIT with ROLLBACK. */
  @Transactional()
  async aborted(): Promise<void> {
    await this.tx.manager.query('SELECT 1 / 0').catch(() => undefined);
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

  it('by default (60 s): idle_in_transaction_session_timeout and TCP keepalives in every transaction', async () => {
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

  // The keepalives set LOCAL cost the server a socket option at BEGIN and again at the end of every transaction.
  it("a direct connection gets the keepalives once, for its session; each transaction then sets its idle timeout LOCAL; a transaction that set them and did not commit (rolled back, or its COMMIT answered with ROLLBACK) makes the next one set them again", async () => {
    const app = await createTestApp({ url: db.url, providers: [Probe], txlock: {}, poolSize: 1 });
    apps.push(app);
    const dataSource = app.get(DataSource);
    const sent: string[] = [];
    poolOf(dataSource).on('acquire', (client) => {
      const patched = client as typeof client & { recorded?: boolean };
      if (patched.recorded) return;
      patched.recorded = true;
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as { query: unknown }).query = (...args: unknown[]) => {
        const first = args[0] as string | { text?: string };
        sent.push(typeof first === 'string' ? first : (first?.text ?? ''));
        return query(...args);
      };
    });
    const probe = app.get(Probe);
    const openings = () => sent.filter((text) => text.startsWith('BEGIN'));
    const sessionKeepalive = async () => (await dataSource.query(`SELECT current_setting('tcp_keepalives_idle') AS keepalive`))[0].keepalive as string;
    const before = await sessionKeepalive();
    const direct = poolerUrl() === undefined;
    // Over TCP the keepalive setting applies (a third of the bound); over a Unix socket PostgreSQL reports 0.
    const bounded = before === '0' ? '0' : '20';

    await expect(probe.failing()).rejects.toThrow('rolled back');
    expect(await sessionKeepalive()).toBe(before);
    await expect(probe.aborted()).rejects.toThrow();
    expect(await sessionKeepalive()).toBe(before);
    for (let i = 0; i < 3; i++) expect((await probe.limits()).idle).toBe('1min');
    if (direct) expect(await sessionKeepalive()).toBe(bounded);
    await expect(probe.failing()).rejects.toThrow('rolled back');
    expect((await probe.limits()).idle).toBe('1min');

    const kinds = openings().map((text) => (text.includes('tcp_keepalives_idle') ? 'full' : text.includes("SET LOCAL idle_in_transaction_session_timeout = '1min'") ? 'idle only' : 'none'));
    process.stdout.write(`[vanished client] opening bounds of 7 transactions on one ${direct ? 'direct' : 'pooled'} connection: ${kinds.join(', ')}\n`);
    // Behind a pooler a session setting would stay on a server connection others get next: all LOCAL, every time.
    expect(kinds).toEqual(direct ? ['full', 'full', 'full', 'idle only', 'idle only', 'idle only', 'idle only'] : Array(7).fill('full'));
  });

  it('per server version: client_connection_check_interval and idle_session_timeout from PostgreSQL 14 on only', () => {
    const names = (entries: readonly (readonly [string, string])[]) => entries.map(([name]) => name);
    const on13 = computeBound(60_000, 13, false);
    expect(names(on13.transaction)).toEqual(['idle_in_transaction_session_timeout', 'tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count']);
    expect(on13.connection).toEqual([]);
    expect(names(on13.session)).toEqual(['tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count']);
    const on15 = computeBound(60_000, 15, true);
    expect(on15.transaction).toEqual([['idle_in_transaction_session_timeout', '60000']]);
    expect(on15.connection).toEqual([
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
