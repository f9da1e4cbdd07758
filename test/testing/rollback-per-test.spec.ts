import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Injectable, Param, Post, type INestApplication } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import request from 'supertest';
import { Column, DataSource, Entity, PrimaryGeneratedColumn, Repository } from 'typeorm';
import { AtomicService, CounterService, LeaseService, SingleFlightService, Transactional, TransactionEndedError, TransactionHost } from '../../lib/index.js';
import { beginTestTransaction, useRollbackPerTest, UnfinishedTestWorkError } from '../../lib/testing/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';

@Entity('kit_note')
class Note {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', unique: true })
  body!: string;
}

class Boom extends Error {}

@Injectable()
class Notes {
  readonly committed: string[] = [];

  constructor(
    @InjectRepository(Note) readonly notes: Repository<Note>,
    readonly tx: TransactionHost,
  ) {}

  @Transactional()
  async write(body: string, fail = false): Promise<void> {
    await this.notes.insert({ body });
    this.tx.afterCommit(() => void this.committed.push(body));
    if (fail) throw new Boom(body);
  }

  @Transactional({ propagation: 'REQUIRES_NEW' })
  async writeIndependently(body: string): Promise<void> {
    await this.notes.insert({ body });
  }

  @Transactional()
  async writeThenFail(body: string): Promise<void> {
    await this.writeIndependently(`${body}-independent`);
    throw new Boom(body);
  }

  async bodies(): Promise<string[]> {
    return (await this.notes.find({ order: { body: 'ASC' } })).map((note) => note.body);
  }
}

@Controller('notes')
class NotesController {
  constructor(private readonly notes: Notes) {}

  @Post(':body')
  write(@Param('body') body: string) {
    return this.notes.write(body);
  }

  @Get()
  list() {
    return this.notes.bodies();
  }
}

// Django's TestCase for NestJS: each test runs in one transaction that is rolled back after it; the app's own
// transactions are savepoints of it.
describe('nestjs-txlock/testing: rollback per test', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let notes: Notes;
  let dataSource: DataSource;

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({
      url: db.url,
      entities: [Note],
      providers: [Notes],
      controllers: [NotesController],
      http: true,
      poolSize: 4,
      txlock: { counters: { autoCreate: true }, leases: { autoCreate: true }, singleFlight: { autoCreate: true } },
    });
    notes = app.get(Notes);
    dataSource = app.get(DataSource);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  describe('with useRollbackPerTest()', () => {
    useRollbackPerTest(() => app);

    it('test 1 writes through HTTP, a provider and the library', async () => {
      await request(app.getHttpServer()).post('/notes/over-http').expect(201);
      await notes.write('direct');
      await app.get(CounterService).increment('visits', 3);
      await app.get(AtomicService).getOrCreate(Note, { body: 'got-or-created' });
      expect(await app.get(LeaseService).acquire('job', { atMostForMs: 60_000 })).not.toBeNull();
      expect(await app.get(SingleFlightService).run('report', async () => 'computed', { ttlMs: 60_000 })).toBe('computed');
      expect((await request(app.getHttpServer()).get('/notes').expect(200)).body).toEqual(['direct', 'got-or-created', 'over-http']);
    });

    it('test 2 sees none of it', async () => {
      expect(await notes.bodies()).toEqual([]);
      expect(await app.get(CounterService).get('visits')).toBe(0);
      expect(await app.get(LeaseService).holders()).toEqual([]);
      expect(await app.get(SingleFlightService).run('report', async () => 'computed again', { ttlMs: 60_000 })).toBe('computed again');
    });

    it('a @Transactional that throws rolls back to its savepoint, and the test goes on', async () => {
      await notes.write('kept');
      await expect(notes.write('dropped', true)).rejects.toBeInstanceOf(Boom);
      await notes.write('after');
      expect(await notes.bodies()).toEqual(['after', 'kept']);
    });

    it("afterCommit hooks run when the savepoint standing for the app's transaction is released", async () => {
      notes.committed.length = 0;
      await notes.write('hooked');
      await expect(notes.write('not-hooked', true)).rejects.toBeInstanceOf(Boom);
      expect(notes.committed).toEqual(['hooked']);
    });

    it('REQUIRES_NEW is a savepoint too: inside a test it rolls back with the transaction that called it', async () => {
      await expect(notes.writeThenFail('outer')).rejects.toBeInstanceOf(Boom);
      expect(await notes.bodies()).toEqual([]); // in production "outer-independent" would have committed
    });

    it('a statement that fails outside any app transaction undoes only itself, as in autocommit', async () => {
      await notes.notes.insert({ body: 'unique' });
      await expect(notes.notes.insert({ body: 'unique' })).rejects.toThrow(/duplicate key/);
      await notes.notes.insert({ body: 'still-usable' });
      expect(await notes.bodies()).toEqual(['still-usable', 'unique']);
    });

    it('concurrent requests inside one test share its transaction and still count exactly', async () => {
      const counters = app.get(CounterService);
      await Promise.all(Array.from({ length: 20 }, () => counters.increment('shared')));
      await Promise.all(Array.from({ length: 10 }, (_, i) => request(app.getHttpServer()).post(`/notes/parallel-${i}`).expect(201)));
      expect(await counters.get('shared')).toBe(20);
      expect(await notes.bodies()).toHaveLength(10);
    });
  });

  describe('with beginTestTransaction()', () => {
    it('a test that throws still rolls back', async () => {
      const transaction = await beginTestTransaction(app);
      try {
        await notes.write('thrown-away');
        throw new Boom('the test failed');
      } catch (error) {
        expect(error).toBeInstanceOf(Boom);
      } finally {
        await transaction.rollback();
      }
      expect(await notes.bodies()).toEqual([]);
    });

    it('a forgotten await surfaces as UnfinishedTestWorkError, and the work cannot reach the next test', async () => {
      let release!: () => void;
      const blocked = new Promise<void>((resolve) => (release = resolve));
      const transaction = await beginTestTransaction(app);
      const forgotten = app
        .get(TransactionHost)
        .run(async () => {
          await notes.notes.insert({ body: 'forgotten' });
          await blocked;
          await notes.notes.insert({ body: 'forgotten-later' });
        })
        .catch((error: unknown) => error);
      await new Promise((resolve) => setTimeout(resolve, 50)); // the first insert has run
      await expect(transaction.rollback()).rejects.toBeInstanceOf(UnfinishedTestWorkError);

      const next = await beginTestTransaction(app);
      release();
      expect(await forgotten).toBeInstanceOf(TransactionEndedError);
      expect(await notes.bodies()).toEqual([]);
      await next.rollback();
      expect(await dataSource.query('SELECT count(*)::int AS n FROM kit_note')).toEqual([{ n: 0 }]);
    });
  });
});

describe('nestjs-txlock/testing: a database per test file', () => {
  it('gives each file (and each parallel jest worker) a database of its own', async () => {
    const [first, second] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    try {
      expect(first.name).not.toBe(second.name);
      expect(first.url).not.toBe(second.url);
    } finally {
      await first.drop();
      await second.drop();
    }
  });
});
