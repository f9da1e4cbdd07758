import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Param, Post, type INestApplication } from '@nestjs/common';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DataSource } from 'typeorm';
import { Transactional, TransactionHost } from '../../lib/index.js';
import { createTestDatabase, expectAllReleased, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import { reportFaults } from './report.js';

/** A handler that writes, then waits for the test to let it finish: a slow request. */
@Controller('slow')
class SlowController {
  static wrote: () => void = () => undefined;
  static proceed: Promise<void> = Promise.resolve();
  static finished: Promise<unknown> = Promise.resolve();

  constructor(private readonly tx: TransactionHost) {}

  @Post(':name')
  @Transactional()
  async write(@Param('name') name: string): Promise<{ ok: true }> {
    await this.tx.manager.query('INSERT INTO orders (name) VALUES ($1)', [name]);
    SlowController.wrote();
    await SlowController.proceed;
    return { ok: true };
  }
}

/** Sends POST /slow/:name; with `hangUp`, destroys the socket once the handler has written. */
async function slowRequest(app: INestApplication, name: string, hangUp: boolean): Promise<void> {
  let proceed!: () => void;
  SlowController.proceed = new Promise((resolve) => (proceed = resolve));
  const wrote = new Promise<void>((resolve) => (SlowController.wrote = resolve));
  const { port } = app.getHttpServer().address() as AddressInfo;
  const response = new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: `/slow/${name}` }, (res) => res.resume().on('end', resolve));
    req.on('error', () => resolve());
    req.end();
    void wrote.then(async () => {
      if (hangUp) {
        req.destroy();
        await new Promise((r) => setTimeout(r, 50)); // let the server see the connection close
      }
      proceed();
    });
  });
  await response;
}

describe('a client that disconnects mid-request', () => {
  let db: TestDatabase;
  const apps: INestApplication[] = [];
  const names = async (dataSource: DataSource) => (await dataSource.query('SELECT name FROM orders ORDER BY name')).map((r: { name: string }) => r.name);

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    await db?.drop();
  });

  const start = async (rollbackOnDisconnect?: boolean) => {
    const app = await createTestApp({ url: db.url, controllers: [SlowController], http: true, poolSize: 3, txlock: { rollbackOnDisconnect } });
    apps.push(app);
    const dataSource = app.get(DataSource);
    await dataSource.query('CREATE TABLE IF NOT EXISTS orders (name text PRIMARY KEY)');
    await dataSource.query('TRUNCATE orders');
    return { app, dataSource };
  };

  it('rolls the transaction back and releases the runner; a client that stays gets its commit', async () => {
    const { app, dataSource } = await start();
    await slowRequest(app, 'abandoned', true);
    await expectAllReleased(dataSource);
    await slowRequest(app, 'completed', false);
    await expectAllReleased(dataSource);
    expect(await names(dataSource)).toEqual(['completed']);
    reportFaults('client disconnect mid-request', { tried: 2, succeeded: 1, failed: 1, lost: 0 });
  });

  it('commits anyway when rollbackOnDisconnect is false', async () => {
    const { app, dataSource } = await start(false);
    await slowRequest(app, 'kept-although-abandoned', true);
    await expectAllReleased(dataSource);
    expect(await names(dataSource)).toEqual(['kept-although-abandoned']);
  });
});
