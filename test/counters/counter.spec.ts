import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import {
  CounterOverflowError,
  CounterService,
  InvalidAmountError,
  InvalidCounterKeyError,
  InvalidOptionError,
  MAX_COUNTER_KEY_LENGTH,
  TransactionHost,
  TxLockCounter,
} from '../../lib/index.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { createTestDatabase, expectAllReleased, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import { DataSource } from 'typeorm';
import { resolveCounterOptions } from '../../lib/counters/counter.options.js';

describe('CounterService', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let counters: CounterService;
  let tx: TransactionHost;

  beforeAll(async () => {
    db = await createTestDatabase();
    // The table comes from autoCreate here (the entity is not registered, so synchronize does not make it).
    app = await createTestApp({ url: db.url, poolSize: 20, txlock: { counters: { autoCreate: true } } });
    counters = app.get(CounterService);
    tx = app.get(TransactionHost);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('increments, decrements, reads, sets, resets and deletes', async () => {
    expect(await counters.get('basic')).toBe(0);
    expect(await counters.increment('basic')).toBe(1);
    expect(await counters.increment('basic', 5)).toBe(6);
    expect(await counters.decrement('basic', 2)).toBe(4);
    expect(await counters.decrement('other')).toBe(-1);
    expect(await counters.get('basic')).toBe(4);
    expect([...(await counters.getMany(['other', 'missing', 'basic'])).entries()]).toEqual([
      ['other', -1],
      ['missing', 0],
      ['basic', 4],
    ]);
    await counters.set('basic', 42);
    expect(await counters.get('basic')).toBe(42);
    await counters.reset('basic');
    expect(await counters.get('basic')).toBe(0);
    expect(await counters.delete('basic')).toBe(true);
    expect(await counters.delete('basic')).toBe(false);
  });

  it('returns numbers by default and fails past Number.MAX_SAFE_INTEGER, changing nothing; bigints on request', async () => {
    const SAFE = Number.MAX_SAFE_INTEGER;
    await counters.set('big', SAFE - 1);
    const safe: number = await counters.increment('big');
    expect(safe).toBe(SAFE);
    // The statement's guard refuses it: the counter keeps its value.
    await expect(counters.increment('big')).rejects.toThrow(CounterOverflowError);
    await expect(counters.increment('big')).rejects.toMatchObject({ limit: 'number', target: 'big' });
    expect(await counters.get('big')).toBe(SAFE);
    // Inside a transaction too (no coalescing there), and the transaction goes on.
    await tx.run(async () => {
      await expect(counters.increment('big', 2)).rejects.toThrow(/Number.MAX_SAFE_INTEGER.*\{ bigint: true \}/);
      expect(await counters.decrement('big')).toBe(SAFE - 1);
    });
    const wide: bigint = await counters.increment('big', 2, { bigint: true });
    expect(wide).toBe(2n ** 53n);
    expect(await counters.increment('big', 10n, { bigint: true })).toBe(2n ** 53n + 10n);
    // A number read of a value beyond the safe range fails; a bigint read does not.
    await expect(counters.get('big')).rejects.toThrow(CounterOverflowError);
    expect(await counters.get('big', { bigint: true })).toBe(2n ** 53n + 10n);
    expect((await counters.getMany(['big'], { bigint: true })).get('big')).toBe(2n ** 53n + 10n);
    await counters.set('big', 2n ** 63n - 2n);
    expect(await counters.increment('big', 1, { bigint: true })).toBe(2n ** 63n - 1n);
    await expect(counters.increment('big', 1, { bigint: true })).rejects.toMatchObject({ name: 'CounterOverflowError', limit: 'type' });
    expect(await counters.get('big', { bigint: true })).toBe(2n ** 63n - 1n);
    // A delta past the safe range is refused before anything is sent, also for a counter that does not exist yet.
    await expect(counters.increment('fresh-big', 2n ** 53n)).rejects.toThrow(CounterOverflowError);
    expect(await counters.get('fresh-big')).toBe(0);
  });

  it('bounded calls: numbers by default, the safe range as an overflow (not a refusal), bigints on request', async () => {
    await counters.set('quota-big', Number.MAX_SAFE_INTEGER - 1);
    const granted = await counters.tryIncrement('quota-big', 1, { max: 2n ** 60n });
    const value: number = granted.value;
    expect({ applied: granted.applied, value }).toEqual({ applied: true, value: Number.MAX_SAFE_INTEGER });
    await expect(counters.tryIncrement('quota-big', 1, { max: 2n ** 60n })).rejects.toMatchObject({ name: 'CounterOverflowError', limit: 'number' });
    // Refused by the caller's own bound: a refusal, as always.
    expect(await counters.tryIncrement('quota-big', 1, { max: 10 })).toMatchObject({ applied: false, value: Number.MAX_SAFE_INTEGER });
    const wide = await counters.tryIncrement('quota-big', 1, { max: 2n ** 60n, bigint: true });
    const bigValue: bigint = wide.value;
    expect({ applied: wide.applied, bigValue }).toEqual({ applied: true, bigValue: 2n ** 53n });
    expect(await counters.get('quota-big', { bigint: true })).toBe(2n ** 53n);
  });

  it('refuses bad keys and amounts with named errors', async () => {
    await expect(counters.increment('')).rejects.toBeInstanceOf(InvalidCounterKeyError);
    await expect(counters.increment('x'.repeat(MAX_COUNTER_KEY_LENGTH + 1))).rejects.toBeInstanceOf(InvalidCounterKeyError);
    await expect(counters.increment('nul\u0000key')).rejects.toBeInstanceOf(InvalidCounterKeyError);
    await expect(counters.increment(42 as unknown as string)).rejects.toBeInstanceOf(InvalidCounterKeyError);
    for (const by of [1.5, Number.NaN, Infinity, 2 ** 53, '1', -1, 2n ** 63n]) {
      await expect(counters.increment('k', by as number)).rejects.toBeInstanceOf(InvalidAmountError);
    }
    await expect(counters.increment('k', 1, { windowMs: 0 })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(counters.tryIncrement('k', 1, {} as { max: number })).rejects.toBeInstanceOf(InvalidOptionError);
    expect(await counters.increment('x'.repeat(MAX_COUNTER_KEY_LENGTH))).toBe(1);
  });

  it('binds hostile keys: they are stored verbatim and touch nothing else', async () => {
    const hostile = [`'; DROP TABLE txlock_counters; --`, `"key") VALUES ('x', 1); --`, '$1', 'ü🙂\\\n\t%_*'];
    for (const key of hostile) expect(await counters.increment(key, 3)).toBe(3);
    const rows = await app.get(DataSource).query('SELECT "key", "value"::int AS value FROM txlock_counters WHERE "key" = ANY($1)', [hostile]);
    expect(rows).toHaveLength(hostile.length);
    expect((await counters.getMany(hostile)).size).toBe(hostile.length);
  });

  it('quota: 300 concurrent tryIncrement against max 100 grant exactly 100', async () => {
    const outcomes = valuesOf(await concurrently(300, () => counters.tryIncrement('quota', 1, { max: 100 })));
    const granted = outcomes.filter((o) => o.applied);
    expect(granted).toHaveLength(100);
    expect(granted.map((o) => o.value).sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    // A refusal reports the value as of its statement's snapshot (documented): never above the bound.
    expect(outcomes.filter((o) => !o.applied).every((o) => Number(o.value) <= 100)).toBe(true);
    expect(await counters.get('quota')).toBe(100);
  });

  it('control: check-then-consume (get, then increment when under the limit) lets extra requests through', async () => {
    const outcomes = valuesOf(
      await concurrently(300, async () => {
        if (Number(await counters.get('naive-quota')) >= 100) return false;
        await counters.increment('naive-quota');
        return true;
      }),
    );
    const granted = outcomes.filter(Boolean).length;
    console.log(`[counters] naive check-then-consume quota 100: granted ${granted} of 300`);
    expect(granted).toBeGreaterThan(100);
  });

  it('bounded counters never cross their bound, and a too-large amount never creates a row', async () => {
    expect(await counters.tryIncrement('bounded', 5, { max: 3 })).toEqual({ applied: false, value: 0, resetsAt: null });
    expect(await counters.delete('bounded')).toBe(false);
    expect(await counters.tryIncrement('bounded', 3, { max: 3 })).toEqual({ applied: true, value: 3, resetsAt: null });
    expect(await counters.tryIncrement('bounded', 1, { max: 3 })).toEqual({ applied: false, value: 3, resetsAt: null });
    await counters.set('stock', 50);
    const taken = valuesOf(await concurrently(120, () => counters.tryDecrement('stock', 1, { min: 0 })));
    expect(taken.filter((t) => t.applied)).toHaveLength(50);
    expect(await counters.get('stock')).toBe(0);
    // A negative counter may take a step larger than the bound itself.
    await counters.set('debt', -10);
    expect(await counters.tryIncrement('debt', 5, { max: 3 })).toMatchObject({ applied: true, value: -5 });
  });

  it('inside a transaction a counter call joins it: a rollback leaves no trace', async () => {
    await counters.set('tx', 10);
    await expect(
      tx.run(async () => {
        expect(await counters.increment('tx', 5)).toBe(15);
        expect(await counters.increment('tx-new')).toBe(1);
        expect(await counters.tryIncrement('tx', 1, { max: 100 })).toMatchObject({ applied: true, value: 16 });
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await counters.get('tx')).toBe(10);
    expect(await counters.delete('tx-new')).toBe(false);
    await tx.run(() => counters.increment('tx', 5));
    expect(await counters.get('tx')).toBe(15);
  });

  it('a window starts a fresh count once it has ended (database clock)', async () => {
    const first = await counters.tryIncrement('window', 1, { max: 1_000, windowMs: 400 });
    expect(first).toMatchObject({ applied: true, value: 1 });
    expect(first.resetsAt).toBeInstanceOf(Date);
    expect(await counters.increment('window', 1, { windowMs: 400 })).toBe(2);
    expect(await counters.get('window')).toBe(2);
    await untilDatabaseTime(app.get(DataSource), first.resetsAt!);
    expect(await counters.get('window')).toBe(0);
    expect(await counters.increment('window', 1, { windowMs: 400 })).toBe(1);
    expect(await counters.deleteExpired()).toBe(0);
  });

  it('callers across window boundaries: each window counts 1..n with no gap or repeat, and the total is exact', async () => {
    const results = [];
    for (let wave = 0; wave < 6; wave++) {
      results.push(...valuesOf(await concurrently(50, () => counters.tryIncrement('waves', 1, { max: 1_000_000, windowMs: 150 }))));
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    const byWindow = new Map<number, number[]>();
    for (const r of results) {
      expect(r.applied).toBe(true);
      const list = byWindow.get(r.resetsAt!.getTime()) ?? [];
      list.push(Number(r.value));
      byWindow.set(r.resetsAt!.getTime(), list);
    }
    expect(byWindow.size).toBeGreaterThan(1);
    let total = 0;
    for (const values of byWindow.values()) {
      expect(values.sort((a, b) => a - b)).toEqual(Array.from({ length: values.length }, (_, i) => i + 1));
      total += values.length;
    }
    expect(total).toBe(300);
  });

  it('releases every connection', async () => {
    await expectAllReleased(app.get(DataSource));
  });
});

describe('CounterService autoCreate', () => {
  it('two replicas booting at once on a fresh database both start, and the table matches the entity', async () => {
    const db = await createTestDatabase();
    try {
      const apps = await Promise.all(
        [0, 1, 2].map(() => createTestApp({ url: db.url, poolSize: 2, txlock: { counters: { autoCreate: true, table: 'public.race_counters' } } })),
      );
      expect(await apps[0]!.get(CounterService).increment('k')).toBe(1);
      expect(await apps[1]!.get(CounterService).increment('k')).toBe(2);
      await Promise.all(apps.map((a) => a.close()));
      // The entity maps the same columns: an app with it in its entities reads the table autoCreate made.
      const withEntity = await createTestApp({ url: db.url, poolSize: 2, entities: [TxLockCounter], txlock: { counters: { coalesce: false } } });
      await withEntity.get(CounterService).increment('e', 7);
      expect(await withEntity.get(DataSource).getRepository(TxLockCounter).findOneByOrFail({ key: 'e' })).toMatchObject({ value: '7', expiresAt: null });
      await withEntity.close();
    } finally {
      await db.drop();
    }
  });

  it('refuses a table name that is not an identifier, and quotes one that is', () => {
    expect(() => resolveCounterOptions({ table: 'x; DROP TABLE y' })).toThrow(InvalidOptionError);
    expect(() => resolveCounterOptions({ table: 'a.b.c' })).toThrow(InvalidOptionError);
    expect(resolveCounterOptions({ table: 'app.Counters' }).table).toBe('"app"."Counters"');
  });
});

/** Waits until the database clock has passed `moment` (no app clock involved). */
async function untilDatabaseTime(dataSource: DataSource, moment: Date): Promise<void> {
  for (;;) {
    const [row] = (await dataSource.query('SELECT statement_timestamp() > $1 AS passed', [moment])) as { passed: boolean }[];
    if (row!.passed) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
