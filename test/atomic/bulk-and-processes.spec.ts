import { describe, it, expect, beforeAll } from '@jest/globals';
import { DataSource } from 'typeorm';
import { AtomicService, InvalidOptionError, MissingUniqueConstraintError, TransactionHost } from '../../lib/index.js';
import { expectAllReleased } from '../support/database.js';
import { runWorkers } from '../support/processes.js';
import { RoundTripLog } from '../support/round-trips.js';
import type { AtomicWorkerInput, AtomicWorkerOutput } from './atomic.worker.js';
import { ATOMIC_ENTITIES, Domain, LooseSession, Session } from './entities.js';
import { useTestApp } from '../support/test-app.js';

const WORKER = 'test/atomic/atomic.worker.ts';
const PROCESSES = 4;
const ROWS_PER_WORKER = 1000;

/** Each worker's 1,000 names: half shared by every worker, half overlapping with the next worker only, each in its own shuffled order. */
function overlappingNames(prefix: string): string[][] {
  return Array.from({ length: PROCESSES }, (_, w) => {
    const shared = Array.from({ length: 500 }, (_, i) => `${prefix}-shared-${i}.com`);
    const pair = Array.from({ length: 500 }, (_, i) => `${prefix}-pair-${(w * 250 + i) % (PROCESSES * 250)}.com`);
    return shuffle([...shared, ...pair], w + 1);
  });
}

function shuffle<T>(items: T[], seed: number): T[] {
  let state = seed;
  for (let i = items.length - 1; i > 0; i--) {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = state % (i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

// Connections: this file's app 10 + 4 processes x 5 = 30.
describe('AtomicService across processes, and bulkGetOrCreate', () => {
  const testApp = useTestApp({ entities: ATOMIC_ENTITIES });
  let atomic: AtomicService;
  let dataSource: DataSource;

  beforeAll(async () => {
    atomic = testApp.get(AtomicService);
    dataSource = testApp.dataSource;
  });

  it(`getOrCreate of one key from ${PROCESSES} processes x 50 callers: one row, one created, one id`, async () => {
    const input: AtomicWorkerInput = { mode: 'session', key: 'shared-session', callers: 50 };
    const outputs = await runWorkers<AtomicWorkerOutput>(WORKER, testApp.db.url, PROCESSES, input);
    const ids = outputs.flatMap((o) => o.ids);
    expect(ids).toHaveLength(PROCESSES * 50);
    expect(new Set(ids).size).toBe(1);
    expect(outputs.reduce((sum, o) => sum + o.created, 0)).toBe(1);
    expect(await dataSource.getRepository(Session).countBy({ key: 'shared-session' })).toBe(1);
  });

  it(`bulkGetOrCreate of ${ROWS_PER_WORKER} overlapping rows from ${PROCESSES} workers: no error, no duplicate, every caller gets every row`, async () => {
    const names = overlappingNames('bulk');
    const distinct = new Set(names.flat());
    const outputs = await runWorkers<AtomicWorkerOutput>(WORKER, testApp.db.url, PROCESSES, { mode: 'bulk', names } satisfies AtomicWorkerInput);
    for (const output of outputs) {
      expect(output.ids).toHaveLength(ROWS_PER_WORKER);
      expect(output.ids).not.toContain('mismatch');
    }
    const rows = await dataSource.getRepository(Domain).find();
    const bulkRows = rows.filter((d) => d.name.startsWith('bulk-'));
    expect(bulkRows).toHaveLength(distinct.size);
    expect(outputs.reduce((sum, o) => sum + o.created, 0)).toBe(distinct.size);
    // Every worker saw the same id for a name as every other worker, and as the table holds.
    const idOf = new Map(bulkRows.map((d) => [d.name, `${d.id}:${d.name}`]));
    for (const [w, output] of outputs.entries()) expect(output.ids).toEqual(names[w]!.map((name) => idOf.get(name)));
    console.log(`[bulkGetOrCreate] ours: ${PROCESSES} workers, ${distinct.size} distinct names → ${bulkRows.length} rows, 0 failures`);
  });

  it('control: the naive find-then-insert import dies on duplicate keys (or on the deadlocks they cause) in the same test', async () => {
    // Races need the workers to overlap; on a loaded machine one may boot late, so allow a few rounds.
    let failures: string[] = [];
    for (let round = 0; round < 5 && failures.length === 0; round++) {
      const names = overlappingNames(`naive-${round}`);
      const outputs = await runWorkers<AtomicWorkerOutput>(WORKER, testApp.db.url, PROCESSES, { mode: 'naive-bulk', names } satisfies AtomicWorkerInput);
      failures = outputs.flatMap((o) => o.failures);
    }
    console.log(`[bulkGetOrCreate] naive find+insert: ${failures.length} of ${PROCESSES * 5} imports failed (${failures[0]?.slice(0, 80)})`);
    expect(failures.length).toBeGreaterThan(0);
    // Each import inserts its missing names in one transaction: two imports inserting the same names in different
    // orders either hit the unique key or wait for each other's uncommitted rows until PostgreSQL breaks the cycle.
    expect(failures.every((f) => /duplicate key|deadlock detected/.test(f))).toBe(true);
  });

  it('keeps input order, marks repeated keys created once, and needs one statement per 1,000 distinct rows', async () => {
    await atomic.bulkGetOrCreate(Domain, [{ name: 'order-b.com' }], { conflictColumns: ['name'] });
    const input = [{ name: 'order-c.com', tld: 'org' }, { name: 'order-b.com' }, { name: 'order-a.com' }, { name: 'order-c.com' }];
    const { entities, created } = await atomic.bulkGetOrCreate(Domain, input, { conflictColumns: ['name'] });
    expect(entities.map((d) => d.name)).toEqual(['order-c.com', 'order-b.com', 'order-a.com', 'order-c.com']);
    expect(created).toEqual([true, false, true, false]);
    expect(entities[0]).toBe(entities[3]);
    expect(entities[0]).toMatchObject({ tld: 'org' });
    expect(entities[2]).toMatchObject({ tld: 'com' });
    const many = Array.from({ length: 2_500 }, (_, i) => ({ name: `many-${i}.com` }));
    const log = RoundTripLog.attach(dataSource);
    const result = await atomic.bulkGetOrCreate(Domain, many, { conflictColumns: ['name'] });
    log.stop();
    expect(log.count).toBe(3);
    expect(result.created.every(Boolean)).toBe(true);
    expect(result.entities.map((d) => d.name)).toEqual(many.map((m) => m.name));
  });

  it('stores json/jsonb values as JSON objects, not as strings of JSON', async () => {
    const { entities } = await atomic.bulkGetOrCreate(Session, [{ key: 'bulk-json', data: { theme: 'dark', tabs: [1, 2] } }], { conflictColumns: ['key'] });
    expect(entities[0]!.data).toEqual({ theme: 'dark', tabs: [1, 2] });
    const [{ kind }] = await dataSource.query(`SELECT jsonb_typeof(data) AS kind FROM ${dataSource.getMetadata(Session).tableName} WHERE key = 'bulk-json'`);
    expect(kind).toBe('object');
  });

  it('inside a transaction it joins it and rolls back with it', async () => {
    const tx = testApp.get(TransactionHost);
    await expect(
      tx.run(async () => {
        await atomic.bulkGetOrCreate(Domain, [{ name: 'tx-a.com' }, { name: 'tx-b.com' }], { conflictColumns: ['name'] });
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await dataSource.getRepository(Domain).countBy({ name: 'tx-a.com' })).toBe(0);
  });

  it('binds hostile values; refuses missing constraints, empty or unknown conflict columns, and null keys', async () => {
    const evil = [`a'); DROP TABLE atomic_domain; --`, `"name"`, '\\x00'];
    const { entities } = await atomic.bulkGetOrCreate(Domain, evil.map((name) => ({ name })), { conflictColumns: ['name'] });
    expect(entities.map((d) => d.name)).toEqual(evil);
    await expect(atomic.bulkGetOrCreate(LooseSession, [{ key: 'x' }], { conflictColumns: ['key'] })).rejects.toBeInstanceOf(MissingUniqueConstraintError);
    await expect(atomic.bulkGetOrCreate(Domain, [{ name: 'x' }], { conflictColumns: [] })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(atomic.bulkGetOrCreate(Domain, [{ name: 'x' }], { conflictColumns: ['nope' as 'name'] })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(atomic.bulkGetOrCreate(Domain, [{ tld: 'x' }], { conflictColumns: ['name'] })).rejects.toBeInstanceOf(InvalidOptionError);
    expect(await atomic.bulkGetOrCreate(Domain, [], { conflictColumns: ['name'] })).toEqual({ entities: [], created: [] });
  });

  it('releases every connection', async () => {
    await expectAllReleased(dataSource);
  });
});
