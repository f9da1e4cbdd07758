import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Body, Controller, Injectable, Post, type INestApplication } from '@nestjs/common';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { Cron, ScheduleModule } from '@nestjs/schedule';
import request from 'supertest';
import { Column, Entity, PrimaryGeneratedColumn, QueryFailedError, type Repository } from 'typeorm';
import { InjectTxRepository, Transactional, TxLockExceptionFilter } from '../../lib/index.js';
import { beginTestTransaction, useRollbackPerTest } from '../../lib/testing/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';

@Entity('shape_order')
class ShapeOrder {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', unique: true })
  label!: string;
}

@Entity('shape_audit')
class ShapeAudit {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  note!: string;
}

/** The app's services, written as apps write them. */
@Injectable()
class Shop {
  constructor(
    @InjectTxRepository(ShapeOrder) readonly orders: Repository<ShapeOrder>,
    @InjectTxRepository(ShapeAudit) readonly audit: Repository<ShapeAudit>,
    private readonly events: EventEmitter2,
  ) {}

  @Transactional()
  async place(label: string): Promise<ShapeOrder> {
    const order = await this.orders.save(this.orders.create({ label }));
    this.events.emit('order.placed', order); // its listeners run inside this transaction (sync) or after it (async)
    return order;
  }

  /** A nightly job, run by @nestjs/schedule in production and by hand in tests. */
  @Cron('0 3 * * *')
  @Transactional()
  async nightly(): Promise<void> {
    await this.audit.insert({ note: `nightly: ${await this.orders.count()} orders` });
  }
}

@Injectable()
class Listeners {
  constructor(@InjectTxRepository(ShapeAudit) private readonly audit: Repository<ShapeAudit>) {}

  @OnEvent('order.placed')
  onPlacedSync(order: ShapeOrder): Promise<unknown> {
    return this.audit.insert({ note: `sync listener: ${order.label}` });
  }

  // An async listener runs after the emitting transaction ended: it needs a transaction of its own.
  @OnEvent('order.placed', { async: true, promisify: true })
  @Transactional({ propagation: 'REQUIRES_NEW' })
  async onPlacedAsync(order: ShapeOrder): Promise<void> {
    await this.audit.insert({ note: `async listener: ${order.label}` });
  }
}

/** A queue-like consumer: the request enqueues, the work runs after the response. */
@Injectable()
class Mailer {
  private running: Promise<unknown> = Promise.resolve();
  readonly failures: unknown[] = [];

  constructor(@InjectTxRepository(ShapeAudit) private readonly audit: Repository<ShapeAudit>) {}

  enqueue(label: string): void {
    this.running = this.running.then(() => new Promise((resolve) => setImmediate(resolve))).then(() => this.send(label).catch((error: unknown) => void this.failures.push(error)));
  }

  /** What a test awaits: the queue has drained. */
  idle(): Promise<unknown> {
    return this.running;
  }

  @Transactional()
  private async send(label: string): Promise<void> {
    await this.audit.insert({ note: `mailed: ${label}` });
  }
}

@Controller('orders')
class Orders {
  constructor(
    private readonly shop: Shop,
    private readonly mailer: Mailer,
  ) {}

  @Post()
  async place(@Body() body: { label: string }): Promise<ShapeOrder> {
    const order = await this.shop.place(body.label);
    this.mailer.enqueue(body.label);
    return order;
  }
}

// The testing kit on the shapes real apps' tests have: supertest requests, direct provider calls, @nestjs/schedule
// jobs run by hand, @nestjs/event-emitter listeners (sync and async), a consumer that works after the response.
// What each test writes is gone in the next one; failures look as in production.
describe('nestjs-txlock/testing on the shapes of real apps', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let shop: Shop;
  let mailer: Mailer;
  const notes = async () => (await shop.audit.find({ order: { note: 'ASC' } })).map((row) => row.note);

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({
      url: db.url,
      entities: [ShapeOrder, ShapeAudit],
      providers: [Shop, Listeners, Mailer],
      controllers: [Orders],
      imports: [EventEmitterModule.forRoot(), ScheduleModule.forRoot()],
      http: true,
    });
    app.useGlobalFilters(new TxLockExceptionFilter());
    shop = app.get(Shop);
    mailer = app.get(Mailer);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  describe('one test writes, the next sees nothing', () => {
    useRollbackPerTest(() => app);

    it('a supertest request, its sync and async listeners, and the mail it queues', async () => {
      await request(app.getHttpServer()).post('/orders').send({ label: 'first' }).expect(201);
      await mailer.idle();
      await new Promise((resolve) => setTimeout(resolve, 50)); // the async listener
      expect(await notes()).toEqual(['async listener: first', 'mailed: first', 'sync listener: first']);
    });

    it('a direct provider call and a cron job run by hand', async () => {
      expect(await shop.orders.count()).toBe(0);
      expect(await notes()).toEqual([]);
      await shop.place('second');
      await shop.nightly();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect((await notes()).filter((note) => note.startsWith('nightly'))).toEqual(['nightly: 1 orders']);
    });

    it('a failure looks as in production: the duplicate is a QueryFailedError (23505), the first order is kept', async () => {
      expect(await shop.orders.count()).toBe(0);
      await shop.place('twice');
      const error = await shop.place('twice').catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(QueryFailedError);
      expect((error as QueryFailedError & { driverError: { code: string } }).driverError.code).toBe('23505');
      expect((await shop.orders.find()).map((order) => order.label)).toEqual(['twice']);
      await request(app.getHttpServer()).post('/orders').send({ label: 'twice' }).expect(500);
    });

    it('starts from a clean database again', async () => {
      expect(await shop.orders.count()).toBe(0);
      expect(await notes()).toEqual([]);
      expect(mailer.failures).toEqual([]);
    });
  });

  // A request's async context is its server connection's, and a server that started listening inside a test carries
  // that test's binding to every request after it (what Vitest on Node 20 did to the fixture app's e2e tests): a
  // request belongs to the tests running when it starts, or to none.
  it('a server that started listening in a test that ended serves later tests, and requests outside tests, as it should', async () => {
    const server = app.getHttpServer() as import('node:http').Server;
    const listen = () => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const close = () => new Promise((resolve) => server.close(resolve));
    await close(); // createTestApp() started it outside any test
    const first = await beginTestTransaction(app);
    await listen();
    // The order's listeners and its mail run after the response: each test waits for them, as the first test above does.
    const settled = async () => {
      await mailer.idle();
      await new Promise((resolve) => setTimeout(resolve, 50));
    };
    try {
      await request(server).post('/orders').send({ label: 'in the first test' }).expect(201);
      await settled();
      await first.rollback();
      const second = await beginTestTransaction(app);
      await request(server).post('/orders').send({ label: 'in the second test' }).expect(201);
      await settled();
      expect((await shop.orders.find()).map((order) => order.label)).toEqual(['in the second test']);
      await second.rollback();
      await request(server).post('/orders').send({ label: 'outside tests' }).expect(201);
      await settled();
      expect((await shop.orders.find()).map((order) => order.label)).toEqual(['outside tests']);
    } finally {
      await close();
      await listen();
      await shop.orders.createQueryBuilder().delete().execute();
      await shop.audit.createQueryBuilder().delete().execute();
    }
  });
});
