import { describe, it, expect, beforeAll } from '@jest/globals';
import { DataSource } from 'typeorm';
import { AtomicService, InvalidOptionError } from '../../lib/index.js';
import { concurrently, valuesOf, type Outcome } from '../support/concurrency.js';
import { expectAllReleased } from '../support/database.js';
import { RoundTripLog } from '../support/round-trips.js';
import { useTestApp } from '../support/test-app.js';
import { ATOMIC_ENTITIES, GLOBAL_SETTING_KEY, GlobalSetting, Session, TenantSetting } from './entities.js';

const CALLERS = 20;

// Connections: one app with a pool of 25.
describe('get-or-create family: a NULL in a column of the unique key', () => {
  const testApp = useTestApp({ poolSize: 25, entities: ATOMIC_ENTITIES });
  let atomic: AtomicService;
  let dataSource: DataSource;
  /** PostgreSQL 15+: GlobalSetting's key is made NULLS NOT DISTINCT. Before that it stays NULLS DISTINCT and is refused. */
  let nullsNotDistinct: boolean;

  beforeAll(async () => {
    atomic = testApp.get(AtomicService);
    dataSource = testApp.dataSource;
    const [{ server_version_num: version }] = (await dataSource.query('SHOW server_version_num')) as { server_version_num: string }[];
    nullsNotDistinct = Number(version) >= 150_000;
    if (nullsNotDistinct) {
      await dataSource.query(
        `ALTER TABLE atomic_global_setting DROP CONSTRAINT "${GLOBAL_SETTING_KEY}",
          ADD CONSTRAINT "${GLOBAL_SETTING_KEY}" UNIQUE NULLS NOT DISTINCT (tenant, name)`,
      );
    }
  });

  /** Rows of a setting table with a NULL tenant and this name. */
  const globalRows = async (table: 'atomic_tenant_setting' | 'atomic_global_setting', name: string) => {
    const [row] = (await dataSource.query(`SELECT count(*)::int AS n FROM ${table} WHERE tenant IS NULL AND name = $1`, [name])) as { n: number }[];
    return row!.n;
  };

  const expectNullKeyRefusals = (outcomes: Outcome<unknown>[], option: string) => {
    expect(outcomes.filter((o) => o.ok)).toHaveLength(0);
    for (const outcome of outcomes) {
      const error = outcome.ok ? undefined : outcome.error;
      expect(error).toBeInstanceOf(InvalidOptionError);
      expect(error).toMatchObject({ option, value: null });
      expect((error as Error).message).toContain('NULLS NOT DISTINCT');
    }
  };

  it(`getOrCreate: ${CALLERS} concurrent callers with a NULL in a NULLS DISTINCT key are all refused, naming the column; no row`, async () => {
    const outcomes = await concurrently(CALLERS, () => atomic.getOrCreate(TenantSetting, { tenant: null, name: 'lang' }, { value: 'en' }));
    expect(await globalRows('atomic_tenant_setting', 'lang')).toBe(0);
    expectNullKeyRefusals(outcomes, 'where.tenant');
  });

  it('updateOrCreate: 3 sequential calls with a NULL in a NULLS DISTINCT key are refused; no row (not 3)', async () => {
    const outcomes: Outcome<unknown>[] = [];
    for (const value of ['en', 'fr', 'de']) outcomes.push(await settle(atomic.updateOrCreate(TenantSetting, { tenant: null, name: 'theme' }, { value })));
    expect(await globalRows('atomic_tenant_setting', 'theme')).toBe(0);
    expectNullKeyRefusals(outcomes, 'where.tenant');
  });

  it('bulkGetOrCreate: the same rule, naming the first row with the NULL; no row', async () => {
    const rows = [{ tenant: 'acme', name: 'bulk' }, { tenant: null, name: 'bulk' }, { tenant: null, name: 'bulk' }];
    const outcomes = [await settle(atomic.bulkGetOrCreate(TenantSetting, rows, { conflictColumns: ['tenant', 'name'] }))];
    expect(await dataSource.getRepository(TenantSetting).countBy({ name: 'bulk' })).toBe(0);
    expectNullKeyRefusals(outcomes, 'rows[1].tenant');
  });

  it('a NULL outside the chosen unique key is matched with IS NULL: one row for concurrent callers, in all three calls', async () => {
    const nonKey = valuesOf(await concurrently(CALLERS, () => atomic.getOrCreate(TenantSetting, { tenant: 'acme', name: 'tz', value: null })));
    expect(nonKey.filter((r) => r.created)).toHaveLength(1);
    expect(await dataSource.getRepository(TenantSetting).countBy({ tenant: 'acme', name: 'tz' })).toBe(1);
    // Session has two unique columns; a NULL token must not make `token` the key when `key` is given.
    const sessions = valuesOf(await concurrently(CALLERS, () => atomic.getOrCreate(Session, { key: 'null-token', token: null })));
    expect(await dataSource.getRepository(Session).countBy({ key: 'null-token' })).toBe(1);
    expect(sessions.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(sessions.map((r) => r.entity.id)).size).toBe(1);
    // bulk: a conflict column outside the unique key may be NULL, and the row is found again by it.
    const first = await atomic.bulkGetOrCreate(Session, [{ key: 'bulk-null', userId: null }], { conflictColumns: ['key', 'userId'] });
    const again = await atomic.bulkGetOrCreate(Session, [{ key: 'bulk-null', userId: null }], { conflictColumns: ['key', 'userId'] });
    expect(await dataSource.getRepository(Session).countBy({ key: 'bulk-null' })).toBe(1);
    expect([first.created, again.created]).toEqual([[true], [false]]);
    expect(again.entities[0]!.id).toBe(first.entities[0]!.id);
  });

  it(`NULLS NOT DISTINCT key: ${CALLERS} concurrent getOrCreate with a NULL make exactly 1 row, 1 created, 1 id`, async () => {
    const outcomes = await concurrently(CALLERS, () => atomic.getOrCreate(GlobalSetting, { tenant: null, name: 'lang' }, { value: 'en' }));
    if (!nullsNotDistinct) return expectNullKeyRefusals(outcomes, 'where.tenant');
    const results = valuesOf(outcomes);
    expect(await globalRows('atomic_global_setting', 'lang')).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.entity.id)).size).toBe(1);
    expect(results[0]!.entity).toMatchObject({ tenant: null, name: 'lang', value: 'en' });
  });

  it(`NULLS NOT DISTINCT key: updateOrCreate with a NULL updates one row (3 sequential, then ${CALLERS} concurrent)`, async () => {
    const outcomes = [await settle(atomic.updateOrCreate(GlobalSetting, { tenant: null, name: 'theme' }, { value: 'en' }))];
    if (!nullsNotDistinct) return expectNullKeyRefusals(outcomes, 'where.tenant');
    const [first] = valuesOf(outcomes);
    const second = await atomic.updateOrCreate(GlobalSetting, { tenant: null, name: 'theme' }, { value: 'fr' });
    const third = await atomic.updateOrCreate(GlobalSetting, { tenant: null, name: 'theme' }, { value: 'de' });
    expect([first!.created, second.created, third.created]).toEqual([true, false, false]);
    expect(third.entity).toMatchObject({ id: first!.entity.id, tenant: null, value: 'de' });
    expect(await globalRows('atomic_global_setting', 'theme')).toBe(1);
    const racing = valuesOf(await concurrently(CALLERS, (i) => atomic.updateOrCreate(GlobalSetting, { tenant: null, name: 'race' }, { value: `v${i}` })));
    expect(await globalRows('atomic_global_setting', 'race')).toBe(1);
    expect(racing.filter((r) => r.created)).toHaveLength(1);
  });

  it(`NULLS NOT DISTINCT key: ${CALLERS} concurrent bulkGetOrCreate with NULLs make each row once`, async () => {
    const rows = [{ tenant: null, name: 'b' }, { tenant: 'acme', name: 'b' }, { tenant: null, name: 'b' }, { tenant: null, name: 'c' }];
    const outcomes = await concurrently(CALLERS, () => atomic.bulkGetOrCreate(GlobalSetting, rows, { conflictColumns: ['tenant', 'name'] }));
    if (!nullsNotDistinct) return expectNullKeyRefusals(outcomes, 'rows[0].tenant');
    const results = valuesOf(outcomes);
    expect(await globalRows('atomic_global_setting', 'b')).toBe(1);
    expect(await globalRows('atomic_global_setting', 'c')).toBe(1);
    expect(await dataSource.getRepository(GlobalSetting).countBy({ tenant: 'acme', name: 'b' })).toBe(1);
    expect(results.reduce((sum, r) => sum + r.created.filter(Boolean).length, 0)).toBe(3);
    for (const { entities } of results) {
      expect(entities.map((e) => [e.tenant, e.name])).toEqual(rows.map((r) => [r.tenant, r.name]));
      expect(entities[0]!.id).toBe(entities[2]!.id);
    }
    expect(new Set(results.map((r) => r.entities.map((e) => e.id).join())).size).toBe(1);
  });

  it('the catalog is asked only when a NULL is in the key, once per table and key: later calls cost no extra round trip', async () => {
    await atomic.getOrCreate(GlobalSetting, { tenant: null, name: 'cached' }).catch(() => undefined);
    await atomic.getOrCreate(TenantSetting, { tenant: null, name: 'cached' }).catch(() => undefined);
    const log = RoundTripLog.attach(dataSource);
    const hit = await atomic.getOrCreate(GlobalSetting, { tenant: null, name: 'cached' }).catch((e: unknown) => e);
    const hits = log.count;
    log.reset();
    const refused = await atomic.getOrCreate(TenantSetting, { tenant: null, name: 'cached' }).catch((e: unknown) => e);
    const refusals = log.count;
    log.stop();
    expect(refused).toBeInstanceOf(InvalidOptionError);
    expect(refusals).toBe(0);
    if (nullsNotDistinct) expect(hit).toMatchObject({ created: false });
    expect(hits).toBe(nullsNotDistinct ? 1 : 0);
    expect(await globalRows('atomic_tenant_setting', 'cached')).toBe(0);
  });

  it('releases every connection', async () => {
    await expectAllReleased(dataSource);
  });
});

/** The outcome of one call, as concurrently() reports each caller's. */
function settle<T>(promise: Promise<T>): Promise<Outcome<T>> {
  return promise.then(
    (value): Outcome<T> => ({ ok: true, value }),
    (error: unknown): Outcome<T> => ({ ok: false, error }),
  );
}
