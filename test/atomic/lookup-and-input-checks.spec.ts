import { describe, it, expect, beforeAll } from '@jest/globals';
import { DataSource } from 'typeorm';
import { AtomicService, InvalidOptionError, TxLockError } from '../../lib/index.js';
import { expectAllReleased } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';
import { ATOMIC_ENTITIES, Author, Domain, LooseSession, Novel, Session, Setting } from './entities.js';

// Connections: one app with the default pool.
describe('get-or-create family: lookups matching several rows, unknown properties', () => {
  const testApp = useTestApp({ entities: ATOMIC_ENTITIES });
  let atomic: AtomicService;
  let dataSource: DataSource;

  beforeAll(async () => {
    atomic = testApp.get(AtomicService);
    dataSource = testApp.dataSource;
  });

  it(`getOrCreate with { lock: 'advisory' } whose lookup matches two rows: MultipleRowsFoundError, not one of them`, async () => {
    const loose = dataSource.getRepository(LooseSession);
    await loose.insert([{ key: 'dup' }, { key: 'dup' }]);
    const error = await atomic.getOrCreate(LooseSession, { key: 'dup' }, {}, { lock: 'advisory' }).catch((e: unknown) => e);
    // Asserted by name and fields (this file also loads where the class does not exist).
    expect(error).toBeInstanceOf(TxLockError);
    expect(error).toMatchObject({ name: 'MultipleRowsFoundError', entity: 'LooseSession', columns: ['key'] });
    expect(await loose.countBy({ key: 'dup' })).toBe(2);
    // One row is still found, and a missing one created.
    await loose.insert({ key: 'single' });
    expect(await atomic.getOrCreate(LooseSession, { key: 'single' }, {}, { lock: 'advisory' })).toMatchObject({ created: false });
    expect(await atomic.getOrCreate(LooseSession, { key: 'fresh' }, {}, { lock: 'advisory' })).toMatchObject({ created: true });
  });

  it('getOrCreate refuses an unknown property in defaults, as in where, and creates nothing', async () => {
    const error = await atomic.getOrCreate(Session, { key: 'typo' }, { userID: 7 } as never).catch((e: unknown) => e);
    expect(await dataSource.getRepository(Session).countBy({ key: 'typo' })).toBe(0);
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error).toMatchObject({ option: 'defaults property', value: 'userID' });
    await expect(atomic.getOrCreate(Session, { key: 'typo', userID: 7 } as never)).rejects.toMatchObject({ option: 'where property', value: 'userID' });
    // Undefined properties are ignored, as in where.
    expect(await atomic.getOrCreate(Session, { key: 'typo' }, { userId: undefined })).toMatchObject({ created: true });
  });

  it('bulkGetOrCreate refuses an unknown property in a row, naming the row; updateOrCreate in values; nothing is written', async () => {
    const rows = [{ name: 'typo-a.com' }, { name: 'typo-b.com', TLD: 'org' }];
    const error = await atomic.bulkGetOrCreate(Domain, rows as never, { conflictColumns: ['name'] }).catch((e: unknown) => e);
    expect(await dataSource.getRepository(Domain).countBy({ name: 'typo-b.com' })).toBe(0);
    expect(await dataSource.getRepository(Domain).countBy({ name: 'typo-a.com' })).toBe(0);
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error).toMatchObject({ option: 'rows[1] property', value: 'TLD' });
    const update = await atomic.updateOrCreate(Setting, { userId: 1, name: 'typo' }, { valeu: 'x' } as never).catch((e: unknown) => e);
    expect(await dataSource.getRepository(Setting).countBy({ name: 'typo' })).toBe(0);
    expect(update).toMatchObject({ option: 'values property', value: 'valeu' });
  });

  it('a many-to-one relation in defaults or bulk rows sets its foreign key (not dropped); a one-to-many one is refused', async () => {
    const author = await dataSource.getRepository(Author).save({ name: 'Austen' });
    await atomic.getOrCreate(Novel, { title: 'Emma' }, { author });
    await atomic.bulkGetOrCreate(Novel, [{ title: 'Persuasion', author }], { conflictColumns: ['title'] });
    const rows = (await dataSource.query(`SELECT title, "authorId" FROM atomic_novel ORDER BY title`)) as { title: string; authorId: number }[];
    expect(rows).toEqual([
      { title: 'Emma', authorId: author.id },
      { title: 'Persuasion', authorId: author.id },
    ]);
    const error = await atomic.getOrCreate(Author, { name: 'Brontë' }, { novels: [] }).catch((e: unknown) => e);
    expect(await dataSource.getRepository(Author).countBy({ name: 'Brontë' })).toBe(0);
    expect(error).toMatchObject({ option: 'defaults property', value: 'novels' });
  });

  it('releases every connection', async () => {
    await expectAllReleased(dataSource);
  });
});
