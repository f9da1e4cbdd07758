import { describe, it, expect, beforeAll } from '@jest/globals';
import { Column, DataSource, Entity, PrimaryGeneratedColumn, UpdateDateColumn, VersionColumn } from 'typeorm';
import { CounterOverflowError, CounterService, InvalidOptionError, TransactionHost } from '../../lib/index.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { expectAllReleased } from '../support/database.js';
import { quoteIdentifier } from '../../lib/common/sql.js';
import { useTestApp } from '../support/test-app.js';

@Entity('column_user')
class Player {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'int', default: 0 })
  points!: number;

  @Column({ type: 'text', default: '' })
  name!: string;

  @VersionColumn()
  version!: number;

  @UpdateDateColumn({ type: 'timestamptz' })
  updatedAt!: Date;
}

/** Identifiers that only work quoted: a reserved word with a space and capitals (TypeORM itself cannot create names with quotes). */
@Entity('Select Table')
class Product {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ name: 'from Stock', type: 'bigint', default: 0 })
  stock!: string;

  @Column({ type: 'smallint', default: 0 })
  small!: number;
}

const CALLERS = 1000;

describe('CounterService.incrementColumn', () => {
  const testApp = useTestApp({ poolSize: 20, entities: [Player, Product] });
  let counters: CounterService;
  let dataSource: DataSource;

  beforeAll(async () => {
    counters = testApp.get(CounterService);
    dataSource = testApp.dataSource;
  });

  it(`${CALLERS} concurrent +1: exact, each caller gets a distinct new value, version and update date move`, async () => {
    const player = await dataSource.getRepository(Player).save({ name: 'a' });
    const values = valuesOf(await concurrently(CALLERS, () => counters.incrementColumn(Player, { id: player.id }, 'points', 1))).flat();
    expect(values.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: CALLERS }, (_, i) => i + 1));
    const after = await dataSource.getRepository(Player).findOneByOrFail({ id: player.id });
    expect(after.points).toBe(CALLERS);
    expect(after.version).toBe(CALLERS + 1);
    expect(after.updatedAt.getTime()).toBeGreaterThanOrEqual(player.updatedAt.getTime());
  });

  it('control: the naive findOne + save (`user.points += 1`) loses updates in the same test', async () => {
    const repo = dataSource.getRepository(Player);
    const player = await repo.save({ name: 'naive' });
    // No version check on save() (it is not optimistic locking), so concurrent saves overwrite each other.
    await concurrently(CALLERS, async () => {
      const row = await repo.findOneByOrFail({ id: player.id });
      row.points += 1;
      await repo.save(row);
    });
    const { points } = await repo.findOneByOrFail({ id: player.id });
    console.log(`[incrementColumn] naive findOne+save: ${points} of ${CALLERS}`);
    expect(points).toBeLessThan(CALLERS);
  });

  it('stock with min 0 never goes negative: 1000 concurrent -1 on 300 grant exactly 300', async () => {
    const product = await dataSource.getRepository(Product).save({ stock: '300' });
    const results = valuesOf(await concurrently(CALLERS, () => counters.incrementColumn(Product, { id: product.id }, 'stock', -1, { min: 0 })));
    const granted = results.filter((r) => r.length === 1).flat();
    expect(granted).toHaveLength(300);
    expect(granted.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect((await dataSource.getRepository(Product).findOneByOrFail({ id: product.id })).stock).toBe('0');
  });

  it('max bounds, several rows at once, rollback, and no match', async () => {
    const repo = dataSource.getRepository(Player);
    await repo.save([{ name: 'team', points: 5 }, { name: 'team', points: 9 }]);
    expect((await counters.incrementColumn(Player, { name: 'team' }, 'points', 1, { max: 9 })).map(Number)).toEqual([6]);
    expect((await counters.incrementColumn(Player, { name: 'team' }, 'points', 10)).map(Number).sort()).toEqual([16, 19]);
    expect(await counters.incrementColumn(Player, { name: 'nobody' }, 'points', 1)).toEqual([]);
    const tx = testApp.get(TransactionHost);
    await expect(
      tx.run(async () => {
        await counters.incrementColumn(Player, { name: 'team' }, 'points', 100);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect((await repo.findBy({ name: 'team' })).map((p) => p.points).sort()).toEqual([16, 19]);
  });

  it('binds hostile values and quotes hostile identifiers', async () => {
    const repo = dataSource.getRepository(Player);
    const evil = `x' OR '1'='1`;
    await repo.save([{ name: evil, points: 1 }, { name: 'bystander', points: 1 }]);
    expect((await counters.incrementColumn(Player, { name: evil }, 'points', 1)).map(Number)).toEqual([2]);
    expect((await repo.findOneByOrFail({ name: 'bystander' })).points).toBe(1);
    const product = await dataSource.getRepository(Product).save({ stock: '1' });
    // Number values (the default): a row that would pass Number.MAX_SAFE_INTEGER is left unchanged, as by a bound.
    expect(await counters.incrementColumn(Product, { id: product.id }, 'stock', Number.MAX_SAFE_INTEGER)).toEqual([]);
    const wide: bigint[] = await counters.incrementColumn(Product, { id: product.id }, 'stock', 2n ** 53n, { bigint: true });
    expect(wide).toEqual([2n ** 53n + 1n]);
  });

  it('quotes identifiers by doubling embedded quotes', () => {
    expect(quoteIdentifier('odd "table"; --')).toBe('"odd ""table""; --"');
  });

  it('refuses unknown properties, non-integer columns, empty where; overflow is a named error', async () => {
    await expect(counters.incrementColumn(Player, { id: 1 }, 'nope' as 'points', 1)).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(counters.incrementColumn(Player, { id: 1 }, 'name', 1)).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(counters.incrementColumn(Player, { ['id"; --' as 'id']: 1 }, 'points', 1)).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(counters.incrementColumn(Player, {}, 'points', 1)).rejects.toBeInstanceOf(InvalidOptionError);
    const product = await dataSource.getRepository(Product).save({ small: 32_000 });
    await expect(counters.incrementColumn(Product, { id: product.id }, 'small', 1_000)).rejects.toBeInstanceOf(CounterOverflowError);
  });

  it('releases every connection', async () => {
    await expectAllReleased(dataSource);
  });
});
