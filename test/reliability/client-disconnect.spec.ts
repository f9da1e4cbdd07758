import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Injectable, Param, Post, Res, UseGuards, type CanActivate, type ExecutionContext, type INestApplication } from '@nestjs/common';
import { request as httpRequest, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DataSource } from 'typeorm';
import { ClientDisconnectedError, Transactional, TransactionHost } from '../../lib/index.js';
import { createTestDatabase, expectAllReleased, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import { reportFaults } from './report.js';

// Resolves once the server saw the client's connection close ('close' on the response, before it finished).
const closed = (response: ServerResponse): Promise<void> =>
  response.destroyed ? Promise.resolve() : new Promise((resolve) => response.once('close', () => resolve()));

/** A guard that lets the request through only once its client has gone: a slow guard (an auth lookup) the client gave up on. */
@Injectable()
class OutlivedGuard implements CanActivate {
  static entered: () => void = () => undefined;

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const response = context.switchToHttp().getResponse<ServerResponse>();
    OutlivedGuard.entered();
    await closed(response);
    return true;
  }
}

/** A handler that writes, then waits for the test to let it finish: a slow request. */
@Controller('slow')
class SlowController {
  static wrote: (response: ServerResponse) => void = () => undefined;
  static proceed: Promise<void> = Promise.resolve();

  constructor(private readonly tx: TransactionHost) {}

  @Post(':name')
  @Transactional()
  async write(@Param('name') name: string, @Res({ passthrough: true }) response: ServerResponse): Promise<{ ok: true }> {
    await this.tx.manager.query('INSERT INTO orders (name) VALUES ($1)', [name]);
    SlowController.wrote(response);
    await SlowController.proceed;
    return { ok: true };
  }

  // What its transaction ended with ('committed', or the error), for the test.
  static settled: (outcome: unknown) => void = () => undefined;

  @Post('after-guard/:name')
  @UseGuards(OutlivedGuard)
  async writeAfterGuard(@Param('name') name: string): Promise<{ ok: true }> {
    const outcome = await this.tx.run(() => this.tx.manager.query('INSERT INTO orders (name) VALUES ($1)', [name])).then(() => 'committed', (error: unknown) => error);
    SlowController.settled(outcome);
    if (outcome !== 'committed') throw outcome;
    return { ok: true };
  }
}

/** Sends POST /slow/:name; with `hangUp`, destroys the socket once the handler has written, and lets the handler go on once the server saw it. */
async function slowRequest(app: INestApplication, name: string, hangUp: boolean): Promise<void> {
  let proceed!: () => void;
  SlowController.proceed = new Promise((resolve) => (proceed = resolve));
  const wrote = new Promise<ServerResponse>((resolve) => (SlowController.wrote = resolve));
  const { port } = app.getHttpServer().address() as AddressInfo;
  const response = new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: `/slow/${name}` }, (res) => res.resume().on('end', resolve));
    req.on('error', () => resolve());
    req.end();
    void wrote.then(async (serverResponse) => {
      if (hangUp) {
        req.destroy();
        await closed(serverResponse);
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

  it('rolls back the transaction of a request whose client left before the interceptor ran (in a slow guard)', async () => {
    const { app, dataSource } = await start();
    const entered = new Promise<void>((resolve) => (OutlivedGuard.entered = resolve));
    const settled = new Promise<unknown>((resolve) => (SlowController.settled = resolve));
    const { port } = app.getHttpServer().address() as AddressInfo;
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/slow/after-guard/left-during-the-guard' });
    const gone = new Promise<void>((resolve) => req.on('error', () => resolve()).on('close', () => resolve()));
    req.end();
    await entered;
    req.destroy();
    await gone;
    // The handler runs once the guard saw the close: its transaction is rolled back, and the runner released.
    expect(await settled).toBeInstanceOf(ClientDisconnectedError);
    await expectAllReleased(dataSource);
    expect(await names(dataSource)).toEqual([]);
  });

  it('commits anyway when rollbackOnDisconnect is false', async () => {
    const { app, dataSource } = await start(false);
    await slowRequest(app, 'kept-although-abandoned', true);
    await expectAllReleased(dataSource);
    expect(await names(dataSource)).toEqual(['kept-although-abandoned']);
  });
});
