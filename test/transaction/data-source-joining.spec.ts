import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Controller, Injectable, Param, Post, type INestApplication } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import request from 'supertest';
import { Column, DataSource, Entity, PrimaryGeneratedColumn, Repository } from 'typeorm';
import { InjectTxRepository, LeaseService, Transactional, TransactionHost } from '../../lib/index.js';
import { createTestDatabase, expectAllReleased, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import { useTestApp } from '../support/test-app.js';

@Entity('joined_note')
class Note {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  body!: string;

  @Column({ type: 'text', default: '' })
  owner!: string;
}

class Boom extends Error {}

/** Where a statement ran: the backend and the transaction, as PostgreSQL sees them. */
interface Seen {
  pid: number;
  txid: string;
}
const WHERE_AM_I = 'SELECT pg_backend_pid() AS pid, txid_current()::text AS txid';

/** Writes a note through one TypeORM entry point and reports where its statements ran. */
type EntryPoint = (app: Notes, body: string) => Promise<Seen>;

/** A service written the way Nest users write one: plain @InjectRepository, the DataSource, its manager. */
@Injectable()
class Notes {
  constructor(
    @InjectRepository(Note) readonly notes: Repository<Note>,
    @InjectDataSource() readonly dataSource: DataSource,
    readonly tx: TransactionHost,
  ) {}

  /** A custom repository, built the TypeORM way. */
  readonly custom = (): Repository<Note> & { write(body: string): Promise<Seen> } =>
    this.dataSource.getRepository(Note).extend({
      async write(this: Repository<Note>, body: string): Promise<Seen> {
        await this.insert({ body });
        return (await this.query(WHERE_AM_I))[0];
      },
    });

  @Transactional()
  async inTransaction(entry: EntryPoint, body: string, fail: boolean): Promise<{ outer: Seen; entry: Seen }> {
    const outer: Seen = (await this.tx.manager.query(WHERE_AM_I))[0];
    const seen = await entry(this, body);
    if (fail) throw new Boom('roll back');
    return { outer, entry: seen };
  }
}

const where = (notes: Notes): Promise<Seen> => notes.notes.query(WHERE_AM_I).then((rows: Seen[]) => rows[0]!);

/** Every entry point the issue names, each writing one row and saying where it ran. */
const ENTRY_POINTS: [string, EntryPoint][] = [
  ['@InjectRepository: insert()', async (n, body) => (await n.notes.insert({ body }), where(n))],
  ['@InjectRepository: save()', async (n, body) => (await n.notes.save(n.notes.create({ body })), where(n))],
  ['dataSource.getRepository()', async (n, body) => (await n.dataSource.getRepository(Note).insert({ body }), where(n))],
  ['dataSource.manager.insert()', async (n, body) => (await n.dataSource.manager.insert(Note, { body }), where(n))],
  ['dataSource.manager.save()', async (n, body) => (await n.dataSource.manager.save(Note, { body }), where(n))],
  ['dataSource.query()', async (n, body) => (await n.dataSource.query('INSERT INTO joined_note (body) VALUES ($1)', [body]), (await n.dataSource.query(WHERE_AM_I))[0])],
  ['dataSource.createQueryBuilder()', async (n, body) => {
    await n.dataSource.createQueryBuilder().insert().into(Note).values({ body }).execute();
    return (await n.dataSource.createQueryBuilder().select('pg_backend_pid()', 'pid').addSelect('txid_current()::text', 'txid').from('joined_note', 'n').limit(1).getRawOne())!;
  }],
  ["a repository's createQueryBuilder()", async (n, body) => {
    await n.notes.createQueryBuilder().insert().values({ body }).execute();
    const count = await n.notes.createQueryBuilder('note').where('note.body = :body', { body }).getCount();
    if (count !== 1) throw new Error(`the query builder did not see its own insert (${count})`);
    return where(n);
  }],
  ['a custom repository (Repository.extend)', (n, body) => n.custom().write(body)],
  ['dataSource.manager.transaction() (a savepoint of ours)', (n, body) =>
    n.dataSource.manager.transaction(async (manager) => {
      await manager.insert(Note, { body });
      return (await manager.query(WHERE_AM_I))[0];
    })],
  ['dataSource.transaction()', (n, body) =>
    n.dataSource.transaction(async (manager) => {
      await manager.insert(Note, { body });
      return (await manager.query(WHERE_AM_I))[0];
    })],
];

// Inside a transaction of this library, every TypeORM call made through the DataSource joins it, with no change
// to the app's code and no prototype patched; outside one, TypeORM behaves as it always does.
describe('TypeORM calls made through the DataSource join the current transaction', () => {
  const testApp = useTestApp({ entities: [Note], providers: [Notes], poolSize: 6, txlock: { leases: { autoCreate: true } } });
  let notes: Notes;
  let dataSource: DataSource;
  const bodies = async () => ((await dataSource.query('SELECT body FROM joined_note ORDER BY id')) as { body: string }[]).map((r) => r.body);

  beforeAll(() => {
    notes = testApp.get(Notes);
    dataSource = testApp.dataSource;
  });
  beforeEach(() => dataSource.query('TRUNCATE joined_note'));

  for (const [name, entry] of ENTRY_POINTS) {
    it(`${name}: runs on the transaction's backend, rolls back with it, commits once with it`, async () => {
      await expect(notes.inTransaction(entry, 'rolled-back', true)).rejects.toBeInstanceOf(Boom);
      expect(await bodies()).toEqual([]);
      const { outer, entry: seen } = await notes.inTransaction(entry, 'committed', false);
      expect(seen).toEqual(outer);
      expect(await bodies()).toEqual(['committed']);
      await expectAllReleased(dataSource);
    });
  }

  it('outside a transaction each call runs on its own pooled connection and commits at once, as TypeORM does', async () => {
    await notes.notes.insert({ body: 'a' });
    const first: Seen = (await notes.notes.query(WHERE_AM_I))[0];
    const second: Seen = (await dataSource.query(WHERE_AM_I))[0];
    expect(first.txid).not.toBe(second.txid);
    expect(await bodies()).toEqual(['a']);
    await expectAllReleased(dataSource);
  });

  it("the library's own lease statements still run on their own connections inside a transaction", async () => {
    const leases = testApp.get(LeaseService);
    const tx = testApp.get(TransactionHost);
    await expect(
      tx.run(async () => {
        await notes.notes.insert({ body: 'rolled-back' });
        expect(await leases.acquire('joined-lease', { atMostForMs: 60_000 })).not.toBeNull();
        throw new Boom('roll back');
      }),
    ).rejects.toBeInstanceOf(Boom);
    expect(await bodies()).toEqual([]);
    expect((await leases.holders()).map((lease) => lease.name)).toEqual(['joined-lease']); // committed on its own
  });

  it('NOT_SUPPORTED gives code inside a transaction a connection of its own again', async () => {
    const tx = testApp.get(TransactionHost);
    await expect(
      tx.run(async () => {
        await notes.notes.insert({ body: 'rolled-back' });
        await tx.run({ propagation: 'NOT_SUPPORTED' }, () => notes.notes.insert({ body: 'independent' }));
        throw new Boom('roll back');
      }),
    ).rejects.toBeInstanceOf(Boom);
    expect(await bodies()).toEqual(['independent']);
  });
});

/** A controller that uses only @InjectRepository, as Nest users write them. */
@Controller('notes')
class NotesController {
  constructor(@InjectRepository(Note) private readonly notes: Repository<Note>) {}

  @Post(':owner')
  @Transactional()
  async write(@Param('owner') owner: string): Promise<{ own: number; others: number }> {
    await this.notes.insert([{ body: 'one', owner }, { body: 'two', owner }]);
    await new Promise((resolve) => setTimeout(resolve, 5)); // let the other requests interleave
    const own = await this.notes.countBy({ owner });
    const others = (await this.notes.count()) - own;
    if (owner.endsWith('-fail')) throw new Boom('roll back');
    return { own, others };
  }
}

describe('100 concurrent requests whose services use only @InjectRepository', () => {
  const testApp = useTestApp({ entities: [Note], controllers: [NotesController], poolSize: 20, http: true });

  it('each sees only its own transaction: its own two rows, none of the 99 others uncommitted', async () => {
    const server = testApp.app.getHttpServer();
    const responses = await Promise.all(Array.from({ length: 100 }, (_, i) => request(server).post(`/notes/request-${i}${i % 10 === 0 ? '-fail' : ''}`)));
    const ok = responses.filter((r) => r.status === 201);
    expect(ok).toHaveLength(90);
    for (const response of ok) expect(response.body.own).toBe(2);
    const [{ n }] = await testApp.dataSource.query('SELECT count(*)::int AS n FROM joined_note');
    expect(n).toBe(180); // the 10 failed requests left nothing
    await expectAllReleased(testApp.dataSource);
  });
});

describe('joinDataSource: false', () => {
  let db: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ url: db.url, entities: [Note], providers: [Notes, PlainAndTx], txlock: { joinDataSource: false } });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('leaves plain TypeORM calls outside the transaction; @InjectTxRepository and TransactionHost still join it', async () => {
    const service = app.get(PlainAndTx);
    await expect(service.write()).rejects.toBeInstanceOf(Boom);
    const rows = (await app.get(DataSource).query('SELECT body FROM joined_note ORDER BY body')) as { body: string }[];
    expect(rows.map((r) => r.body)).toEqual(['plain-escaped']);
  });
});

@Injectable()
class PlainAndTx {
  constructor(
    @InjectRepository(Note) private readonly plain: Repository<Note>,
    @InjectTxRepository(Note) private readonly joined: Repository<Note>,
    private readonly tx: TransactionHost,
  ) {}

  @Transactional()
  async write(): Promise<void> {
    await this.plain.insert({ body: 'plain-escaped' });
    await this.joined.insert({ body: 'tx-repository' });
    await this.tx.getRepository(Note).insert({ body: 'tx-host' });
    throw new Boom('roll back');
  }
}
