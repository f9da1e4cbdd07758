import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import { Column, DataSource, Entity, PrimaryGeneratedColumn } from 'typeorm';
import {
  AtomicService,
  CounterService,
  IsolationLevel,
  LeaseService,
  LockService,
  Propagation,
  SingleFlightService,
  TransactionHost,
} from '../../lib/index.js';
import { poolerUrl, poolOf } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';

@Entity('state_item')
class StateItem {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', unique: true })
  key!: string;

  @Column({ type: 'int', default: 0 })
  points!: number;
}

/** One call to a pg client's query(): its text, and the prepared statement name when it had one. */
interface SentStatement {
  text: string;
  name?: string;
}

/** Records every query() of every client the DataSource's pool hands out from now on. */
function recordStatements(dataSource: DataSource): SentStatement[] {
  const sent: SentStatement[] = [];
  poolOf(dataSource).on('acquire', (client: pg.PoolClient) => {
    const patched = client as pg.PoolClient & { stateRecorder?: SentStatement[] };
    if (patched.stateRecorder) return;
    patched.stateRecorder = sent;
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const first = args[0] as string | { text?: string; name?: string };
      patched.stateRecorder!.push(typeof first === 'string' ? { text: first } : { text: first?.text ?? '', name: first?.name });
      return query(...args);
    };
  });
  return sent;
}

// What would outlive a transaction on its server connection, and so leak to another client behind a transaction
// pooler (or, without one, to the next user of the pooled connection). Each is matched against every statement
// of a round trip (the library batches statements joined by ";"; its SQL has no ";" inside literals).
const SESSION_STATE: [string, RegExp][] = [
  ['SET without LOCAL', /^\s*SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)/i],
  ['set_config(..., false)', /set_config\s*\(.*,\s*false\s*\)/is],
  ['a session-level advisory lock', /\bpg_(?:try_)?advisory_(?:lock|unlock)(?:_shared|_all)?\s*\(/i],
  ['a named or SQL-level prepared statement', /^\s*(?:PREPARE|EXECUTE|DEALLOCATE)\b/i],
  ['LISTEN', /^\s*(?:UN)?LISTEN\b/i],
  ['a cursor WITH HOLD', /\bWITH\s+HOLD\b/i],
  ['a temporary table', /\bCREATE\s+(?:GLOBAL\s+|LOCAL\s+)?TEMP(?:ORARY)?\b/i],
  ['RESET or DISCARD', /^\s*(?:RESET|DISCARD)\b/i],
];

// A session-level set_config() of a vanished-client connection setting, whole (vanished-client.ts).
const CONNECTION_BOUND_SOURCE = String.raw`set_config\('(?:tcp_keepalives_(?:idle|interval|count)|client_connection_check_interval)', least\(nullif\([^;]*?, 0\), \d+\)::bigint::text, false\) AS \w+`;
const CONNECTION_BOUND = new RegExp(CONNECTION_BOUND_SOURCE);
const CONNECTION_BOUND_ALL = new RegExp(CONNECTION_BOUND_SOURCE, 'g');

/** The kinds of session state `statement` would leave behind. */
function sessionStateIn(statement: SentStatement): string[] {
  const parts = statement.text.split(';');
  const found = SESSION_STATE.filter(([, pattern]) => parts.some((part) => pattern.test(part))).map(([what]) => what);
  if (statement.name !== undefined) found.push(`a named prepared statement (${statement.name})`);
  return found;
}

// Runs through .ci/pgbouncer.sh's transaction-mode PgBouncer in CI, and on both servers directly.
describe('nothing the library sends relies on session state', () => {
  const testApp = useTestApp({ entities: [StateItem], txlock: { autoCreate: true }, poolSize: 6 });

  let sent: SentStatement[];
  beforeAll(async () => {
    sent = recordStatements(testApp.dataSource);
    const tx = testApp.get(TransactionHost);
    const locks = testApp.get(LockService);
    const counters = testApp.get(CounterService);
    const atomic = testApp.get(AtomicService);
    const leases = testApp.get(LeaseService);
    const flights = testApp.get(SingleFlightService);

    // Transactions with every option, and each propagation that opens or nests one.
    await tx.run({ isolation: IsolationLevel.SERIALIZABLE, readOnly: true, timeoutMs: 2_000 }, () => tx.manager.query('SELECT 1'));
    await tx.run({ timeoutMs: 1_000, retries: 1 }, async () => {
      await tx.getRepository(StateItem).insert({ key: 'a' });
      await tx.run({ propagation: Propagation.NESTED }, () => tx.manager.query('SELECT 1'));
      await tx.run({ propagation: Propagation.REQUIRES_NEW }, () => tx.manager.query('SELECT 1'));
      // A lock with timeoutMs inside a running transaction: SET LOCAL lock_timeout, then put back with set_config.
      await locks.withAdvisoryLock('in-tx', () => tx.manager.query('SELECT 1'), { timeoutMs: 1_000 });
      await locks.lockTables(StateItem, 'SHARE ROW EXCLUSIVE', { timeoutMs: 1_000 });
    });
    // Transaction-scope locks: waiting, try, shared, several keys, table locks, holders().
    await locks.withAdvisoryLock('job', () => locks.holders('job'), { timeoutMs: 1_000 });
    await locks.tryAdvisoryLocks(['x', 'y'], () => undefined, { shared: true });
    await locks.withTableLock(StateItem, 'EXCLUSIVE', () => undefined, { nowait: true });
    // Counters (coalesced, bounded, windowed, sharded) and a column increment.
    await Promise.all(Array.from({ length: 20 }, () => counters.increment('hits')));
    await counters.tryIncrement('quota', 1, { max: 5, windowMs: 60_000 });
    await counters.increment('sharded', 1, { shards: 4 });
    await counters.get('hits');
    await counters.incrementColumn(StateItem, { key: 'a' }, 'points', 10);
    // Get-or-create and friends, outside and inside a transaction.
    await Promise.all(Array.from({ length: 5 }, () => atomic.getOrCreate(StateItem, { key: 'b' })));
    await tx.run(() => atomic.getOrCreate(StateItem, { key: 'c' }, { points: 1 }));
    await atomic.updateOrCreate(StateItem, { key: 'c' }, { points: 2 });
    await atomic.bulkGetOrCreate(StateItem, [{ key: 'd' }, { key: 'e' }], { conflictColumns: ['key'] });
    // Leases (with fencing) and single flight.
    await leases.run('nightly', async (lease) => tx.run(() => leases.assertToken(lease.name, lease.token)), { atMostForMs: 10_000, renewEveryMs: 5_000 });
    await Promise.all(Array.from({ length: 5 }, () => flights.run('report', () => ({ total: 1 }), { ttlMs: 10_000 })));
  });

  it('catches each kind of session state it looks for (the check itself)', () => {
    expect(sessionStateIn({ text: 'SET statement_timeout = 5000' })).toEqual(['SET without LOCAL']);
    expect(sessionStateIn({ text: 'BEGIN;\nSET lock_timeout = 10' })).toEqual(['SET without LOCAL']);
    expect(sessionStateIn({ text: "SELECT set_config('lock_timeout', '10', false)" })).toEqual(['set_config(..., false)']);
    expect(sessionStateIn({ text: 'SELECT pg_advisory_lock(1)' })).toEqual(['a session-level advisory lock']);
    expect(sessionStateIn({ text: 'SELECT 1', name: 'txlock_q1' })).toEqual(['a named prepared statement (txlock_q1)']);
    expect(sessionStateIn({ text: 'BEGIN;\nSET LOCAL statement_timeout = 5000' })).toEqual([]);
    expect(sessionStateIn({ text: "SELECT set_config('nestjs_txlock.lock_timeout', current_setting('lock_timeout'), true)" })).toEqual([]);
    expect(sessionStateIn({ text: 'SELECT pg_advisory_xact_lock(1)' })).toEqual([]);
    expect(sessionStateIn({ text: 'UPDATE t\n  SET a = 1\n  WHERE id = 2' })).toEqual([]);
  });

  it('sends no SET without LOCAL, no set_config(..., false) but the keepalives of a direct connection, no session-level lock; names prepared statements only on a direct connection', () => {
    // The run above did send what such a rule inspects: transaction-local settings and many statements.
    expect(sent.length).toBeGreaterThan(40);
    expect(sent.some(({ text }) => /SET LOCAL statement_timeout/.test(text))).toBe(true);
    expect(sent.some(({ text }) => /SET LOCAL lock_timeout/.test(text))).toBe(true);
    // A statement prepared on a pooled connection stays with it and its pg client, which alone knows the name; behind
    // a pooler the bootstrap check finds the pooler and nothing is prepared.
    const direct = poolerUrl() === undefined;
    const named = sent.filter((statement) => statement.name !== undefined);
    if (direct) expect(named.length).toBeGreaterThan(0);
    else expect(named).toEqual([]);
    // On a direct connection, the vanished-client keepalives and connection check are set once for each pooled
    // connection's session (docs/production.md): they stay with it by design, and only make the server notice a dead
    // client sooner. Nothing else; behind a pooler, not even those.
    const connectionBounds = sent.filter(({ text }) => CONNECTION_BOUND.test(text));
    if (direct) expect(connectionBounds.length).toBeGreaterThan(0);
    else expect(connectionBounds).toEqual([]);
    const offending = sent.flatMap((statement) =>
      sessionStateIn(direct ? { text: statement.text.replace(CONNECTION_BOUND_ALL, '') } : statement).map((what) => `${what}: ${statement.text.slice(0, 200)}`),
    );
    expect(offending).toEqual([]);
  });
});
