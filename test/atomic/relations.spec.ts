import { beforeAll, describe, expect, it } from '@jest/globals';
import { DataSource } from 'typeorm';
import { AtomicService, CounterService, InvalidOptionError } from '../../lib/index.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { expectAllReleased } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';
import { ATOMIC_ENTITIES, Author, Edition, Novel, Publisher, Region, Store } from './entities.js';

// A relation given as a value (the related entity, or an object with its id, or null) stands for its join
// column(s), as in TypeORM's save(): in `where`, `defaults` and `values`, and in bulk rows and conflictColumns.
describe('get-or-create family: relations given as values', () => {
  const testApp = useTestApp({ entities: ATOMIC_ENTITIES });
  let atomic: AtomicService;
  let dataSource: DataSource;
  let penguin: Publisher;
  let faber: Publisher;

  beforeAll(async () => {
    atomic = testApp.get(AtomicService);
    dataSource = testApp.dataSource;
    [penguin, faber] = await dataSource.getRepository(Publisher).save([{ name: 'Penguin' }, { name: 'Faber' }]);
  });

  const editions = () => dataSource.query(`SELECT "publisherId", year, title FROM atomic_edition ORDER BY "publisherId", year`);

  it('getOrCreate: a related entity in where finds and creates by its join column; { id } finds the same row', async () => {
    const first = await atomic.getOrCreate(Edition, { publisher: penguin, year: 2024 }, { title: 'Spring' });
    expect(first).toMatchObject({ created: true, entity: { publisherId: penguin.id, year: 2024, title: 'Spring' } });
    const again = await atomic.getOrCreate(Edition, { publisher: { id: penguin.id } as Publisher, year: 2024 }, { title: 'ignored' });
    expect(again).toMatchObject({ created: false, entity: { id: first.entity.id, title: 'Spring' } });
    expect(await atomic.getOrCreate(Edition, { publisherId: penguin.id, year: 2024 })).toMatchObject({ created: false, entity: { id: first.entity.id } });
    // Concurrent callers on one related entity: one row.
    const results = valuesOf(await concurrently(10, () => atomic.getOrCreate(Edition, { publisher: faber, year: 2024 }, { title: 'Race' })));
    expect(results.filter((result) => result.created)).toHaveLength(1);
    expect(await editions()).toEqual([
      { publisherId: penguin.id, year: 2024, title: 'Spring' },
      { publisherId: faber.id, year: 2024, title: 'Race' },
    ]);
  });

  it('updateOrCreate: a related entity in where and in values; a nullable relation set to null', async () => {
    const created = await atomic.updateOrCreate(Edition, { publisher: penguin, year: 2025 }, { title: 'Draft' });
    expect(created).toMatchObject({ created: true, entity: { publisherId: penguin.id, year: 2025, title: 'Draft' } });
    expect(await atomic.updateOrCreate(Edition, { publisher: penguin, year: 2025 }, { title: 'Final' })).toMatchObject({ created: false, entity: { title: 'Final' } });

    const [austen, bronte] = await dataSource.getRepository(Author).save([{ name: 'Austen' }, { name: 'Brontë' }]);
    const novel = async () => (await dataSource.query(`SELECT "authorId" FROM atomic_novel WHERE title = 'Emma'`))[0];
    expect(await atomic.updateOrCreate(Novel, { title: 'Emma' }, { author: austen })).toMatchObject({ created: true });
    expect(await novel()).toEqual({ authorId: austen!.id });
    await atomic.updateOrCreate(Novel, { title: 'Emma' }, { author: { id: bronte!.id } as Author });
    expect(await novel()).toEqual({ authorId: bronte!.id });
    await atomic.updateOrCreate(Novel, { title: 'Emma' }, { author: null });
    expect(await novel()).toEqual({ authorId: null });
    // A relation in where outside the unique key narrows the lookup, NULL included.
    expect(await atomic.getOrCreate(Novel, { title: 'Emma', author: null })).toMatchObject({ created: false });
    const other = await atomic.getOrCreate(Novel, { title: 'Emma', author: austen }).catch((error: unknown) => error);
    expect(other).toMatchObject({ name: 'GetOrCreateConflictError' }); // the title is taken by a row with another author
  });

  it('a relation with two join columns: in where, in values, in bulk rows and as a conflict column', async () => {
    const [north, south] = await dataSource.getRepository(Region).save([
      { country: 'uk', code: 'n' },
      { country: 'uk', code: 's' },
    ]);
    const made = await atomic.getOrCreate(Store, { region: north, name: 'Main' });
    expect(made).toMatchObject({ created: true });
    expect(await atomic.getOrCreate(Store, { region: { country: 'uk', code: 'n' } as Region, name: 'Main' })).toMatchObject({ created: false, entity: { id: made.entity.id } });
    expect(await atomic.updateOrCreate(Store, { region: north, name: 'Main' }, { visits: 3 })).toMatchObject({ created: false, entity: { visits: 3 } });
    const bulk = await atomic.bulkGetOrCreate(
      Store,
      [
        { region: north, name: 'Main' },
        { region: south, name: 'Main' },
        { region: south, name: 'Main' },
      ],
      { conflictColumns: ['region', 'name'] },
    );
    expect(bulk.created).toEqual([false, true, false]);
    expect(bulk.entities[0]!.id).toBe(made.entity.id);
    const rows = await dataSource.query(`SELECT "regionCountry", "regionCode", name, visits FROM atomic_store ORDER BY "regionCode"`);
    expect(rows).toEqual([
      { regionCountry: 'uk', regionCode: 'n', name: 'Main', visits: 3 },
      { regionCountry: 'uk', regionCode: 's', name: 'Main', visits: 0 },
    ]);
  });

  it('a column increment finds its row by a related entity', async () => {
    const counters = testApp.get(CounterService);
    const [region] = await dataSource.getRepository(Region).save([{ country: 'fr', code: 'p' }]);
    await atomic.getOrCreate(Store, { region, name: 'Paris' });
    await counters.incrementColumn(Store, { region, name: 'Paris' }, 'visits', 2);
    expect((await dataSource.getRepository(Store).findOneByOrFail({ name: 'Paris' })).visits).toBe(2);
  });

  it('a related entity without its id is refused, naming the relation and the missing column, and nothing is written', async () => {
    const unsaved = Object.assign(new Publisher(), { name: 'Nobody' });
    const error = await atomic.getOrCreate(Edition, { publisher: unsaved, year: 2030 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error).toMatchObject({ option: 'where.publisher' });
    expect((error as Error).message).toMatch(/id/);
    const partial = await atomic.getOrCreate(Store, { region: { country: 'uk' } as Region, name: 'Half' }).catch((e: unknown) => e);
    expect(partial).toMatchObject({ option: 'where.region' });
    expect(await dataSource.getRepository(Edition).countBy({ year: 2030 })).toBe(0);
    expect(await dataSource.getRepository(Store).countBy({ name: 'Half' })).toBe(0);
  });

  it('releases every connection', async () => {
    await expectAllReleased(dataSource);
  });
});
