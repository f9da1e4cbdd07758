import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Body, Controller, Get, HttpException, Injectable, Module, Param, Post, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Readable } from 'node:stream';
import { concatMap, delay, from, interval, lastValueFrom, map, Observable, take } from 'rxjs';
import request from 'supertest';
import { DataSource, Repository } from 'typeorm';
import { InjectTxRepository, Transactional, TransactionHost, TxLockModule } from '../../lib/index.js';
import { createTestDatabase, expectAllReleased, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import { Item } from './fixtures.js';

@Controller('items')
class ItemsController {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTxRepository(Item) private readonly items: Repository<Item>,
  ) {}

  @Post()
  @Transactional()
  async create(@Body() body: { names: string[]; fail?: boolean }) {
    for (const name of body.names) await this.items.insert({ name });
    if (body.fail) throw new HttpException({ message: 'refused after writing' }, 409);
    return { created: body.names.length };
  }

  // Decorator order reversed on purpose: the route metadata must survive either way.
  @Transactional()
  @Get('observe/:names')
  observe(@Param('names') names: string): Observable<{ inserted: number; inTransaction: boolean }> {
    return from(names.split(',')).pipe(
      delay(5),
      concatMap((name) => this.items.insert({ name })),
      map((_, i) => ({ inserted: i + 1, inTransaction: this.tx.isActive })),
    );
  }

  @Get('observe-fail/:name')
  @Transactional()
  observeFail(@Param('name') name: string): Observable<never> {
    return new Observable<never>((subscriber) => {
      this.items.insert({ name }).then(() => subscriber.error(new HttpException('stream failed', 422)));
    });
  }

  @Get('stream/:name')
  @Transactional()
  async stream(@Param('name') name: string): Promise<Readable> {
    await this.items.insert({ name });
    return Readable.from(['a', 'b', 'c']);
  }
}

describe('@Transactional on controller handlers (HTTP)', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let dataSource: DataSource;
  const names = async () => (await dataSource.query('SELECT name FROM tx_item ORDER BY name')).map((r: { name: string }) => r.name);

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ url: db.url, entities: [Item], controllers: [ItemsController], http: true, poolSize: 5 });
    dataSource = app.get(DataSource);
  });
  beforeEach(() => dataSource.query('TRUNCATE tx_item'));
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('commits a handler that returns normally', async () => {
    await request(app.getHttpServer()).post('/items').send({ names: ['a', 'b'] }).expect(201, { created: 2 });
    expect(await names()).toEqual(['a', 'b']);
    await expectAllReleased(dataSource);
  });

  it('rolls back a handler that throws, and the HTTP error passes through', async () => {
    await request(app.getHttpServer()).post('/items').send({ names: ['x', 'y'], fail: true }).expect(409);
    expect(await names()).toEqual([]);
    await expectAllReleased(dataSource);
  });

  it('keeps the transaction open until a returned Observable completes, then commits', async () => {
    const response = await request(app.getHttpServer()).get('/items/observe/o1,o2,o3').expect(200);
    expect(response.body).toEqual({ inserted: 3, inTransaction: true });
    expect(await names()).toEqual(['o1', 'o2', 'o3']);
    await expectAllReleased(dataSource);
  });

  it('rolls back when the returned Observable errors', async () => {
    await request(app.getHttpServer()).get('/items/observe-fail/gone').expect(422);
    expect(await names()).toEqual([]);
    await expectAllReleased(dataSource);
  });

  it('commits after a returned stream has been read to the end', async () => {
    const response = await request(app.getHttpServer()).get('/items/stream/streamed').expect(200);
    expect(response.text).toBe('abc');
    await expectAllReleased(dataSource);
    expect(await names()).toEqual(['streamed']);
  });
});

@Injectable()
class NightlyJob {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTxRepository(Item) private readonly items: Repository<Item>,
  ) {}

  /** An endless Observable (as an SSE handler returns): it must not hold its transaction after the caller left. */
  @Transactional()
  async ticks(name: string): Promise<Observable<number>> {
    await this.items.insert({ name });
    return interval(5);
  }

  @Transactional()
  async run(name: string, fail: boolean): Promise<string> {
    await this.items.insert({ name });
    if (fail) throw new Error('job failed');
    const [{ txid }] = await this.tx.manager.query('SELECT txid_current()::text AS txid');
    return txid;
  }
}

describe('@Transactional outside HTTP (NestFactory.createApplicationContext, as a script or cron job would)', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db?.drop());

  it('commits and rolls back a provider method in an application context', async () => {
    @Module({
      imports: [
        TypeOrmModule.forRoot({ type: 'postgres', url: db.url, entities: [Item], synchronize: true, extra: { max: 2 } }),
        TxLockModule.forRootAsync({ inject: [DataSource], useFactory: (dataSource: DataSource) => ({ dataSource }) }),
        TxLockModule.forFeature([Item]),
      ],
      providers: [NightlyJob],
    })
    class ScriptModule {}

    const context = await NestFactory.createApplicationContext(ScriptModule, { logger: false });
    try {
      const job = context.get(NightlyJob);
      await expect(job.run('job', false)).resolves.toMatch(/^\d+$/);
      await expect(job.run('failed-job', true)).rejects.toThrow('job failed');
      // The caller takes three ticks of an endless Observable and unsubscribes: the transaction rolls back.
      expect(await lastValueFrom((await job.ticks('endless')).pipe(take(3)))).toBe(2);
      const dataSource = context.get(DataSource);
      expect(await dataSource.query('SELECT name FROM tx_item')).toEqual([{ name: 'job' }]);
      await expectAllReleased(dataSource);
    } finally {
      await context.close();
    }
  });
});
