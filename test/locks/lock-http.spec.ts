import type { IncomingMessage } from 'node:http';
import { inspect } from 'node:util';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { Catch, Controller, Get, HttpStatus, Param, Post, Req, UseFilters, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { AdvisoryLock, InvalidLockKeyError, LockService, TableLock } from '../../lib/index.js';
import { holding } from '../support/gate.js';
import { useTestApp } from '../support/test-app.js';

@Controller('orders')
class OrdersController {
  // The lock decorator below the route decorator...
  @Post(':id/pay')
  @AdvisoryLock({ key: (id: string) => ['order', id], nowait: true })
  pay(@Param('id') id: string) {
    return { paid: id };
  }

  // ...and above it: both keep the route and map lock errors.
  @AdvisoryLock({ key: (id: string) => ['order', id], timeoutMs: 30 })
  @Get(':id')
  show(@Param('id') id: string) {
    return { id };
  }

  @Post('reindex')
  @TableLock('EXCLUSIVE', ['orders_stats'], { nowait: true })
  reindex() {
    return { reindexed: true };
  }
}

/** Keeps what a handler threw, as an app's own catch-all filter (or logger) would get it. */
@Catch()
class KeepErrors implements ExceptionFilter {
  static readonly caught: unknown[] = [];
  catch(exception: unknown, host: ArgumentsHost): void {
    KeepErrors.caught.push(exception);
    host.switchToHttp().getResponse<{ status(code: number): { json(body: unknown): void } }>().status(HttpStatus.INTERNAL_SERVER_ERROR).json({ statusCode: 500 });
  }
}

@Controller('reports')
@UseFilters(KeepErrors)
class ReportsController {
  // No key: the default key is made of the arguments, and a request object has no JSON form.
  @Get('export')
  @AdvisoryLock()
  export(@Req() req: IncomingMessage) {
    return { path: req.url };
  }
}

// Connections: app pool 4.
describe('lock errors over HTTP', () => {
  const testApp = useTestApp({ controllers: [OrdersController, ReportsController], http: true, poolSize: 4 });
  let locks: LockService;

  beforeAll(async () => {
    locks = testApp.get(LockService);
    await testApp.dataSource.query('CREATE TABLE orders_stats (n int)');
  });

  it('answers 423 Locked with a clear body when nowait finds the lock taken, and 201 once it is free', async () => {
    const release = await holding((body) => locks.withAdvisoryLock(['order', '7'], body));
    const busy = await request(testApp.app.getHttpServer()).post('/orders/7/pay');
    expect(busy.status).toBe(423);
    expect(busy.body).toEqual({ statusCode: 423, error: 'Locked', reason: 'locked', message: expect.stringContaining('Retry later') });
    expect(JSON.stringify(busy.body)).not.toContain('order'); // the lock's key stays internal

    const timedOut = await request(testApp.app.getHttpServer()).get('/orders/7');
    expect(timedOut.status).toBe(423);
    expect(timedOut.body).toMatchObject({ reason: 'timeout' });

    await expect(request(testApp.app.getHttpServer()).post('/orders/8/pay')).resolves.toMatchObject({ status: 201, body: { paid: '8' } });
    await release();
    await expect(request(testApp.app.getHttpServer()).post('/orders/7/pay')).resolves.toMatchObject({ status: 201, body: { paid: '7' } });
    await expect(request(testApp.app.getHttpServer()).get('/orders/7')).resolves.toMatchObject({ status: 200, body: { id: '7' } });
  });

  it('answers 423 for a @TableLock handler whose table is busy', async () => {
    const release = await holding((body) => locks.withTableLock('orders_stats', 'SHARE', body));
    const response = await request(testApp.app.getHttpServer()).post('/orders/reindex');
    await release();
    expect(response.status).toBe(423);
    await expect(request(testApp.app.getHttpServer()).post('/orders/reindex')).resolves.toMatchObject({ status: 201 });
  });

  // A new user's first hour: the InvalidLockKeyError for a handler taking @Req() held the whole request, and a
  // logger printing it wrote 2,600 lines (95 KB) per request.
  it('@AdvisoryLock() without a key on a handler taking @Req(): a short InvalidLockKeyError that says to give a key', async () => {
    KeepErrors.caught.length = 0;
    const response = await request(testApp.app.getHttpServer()).get('/reports/export');
    expect(response.status).toBe(500);
    const [error] = KeepErrors.caught as InvalidLockKeyError[];
    expect(error).toBeInstanceOf(InvalidLockKeyError);
    expect(error!.message).toMatch(/argument 1 of ReportsController\.export \(an object of class IncomingMessage\) has no JSON form/);
    expect(error!.message).toMatch(/give the decorator a key/);
    const properties = inspect({ ...error }, { depth: null, maxArrayLength: null, maxStringLength: null });
    expect({ message: error!.message.length < 1_024, properties: properties.length < 1_024 }).toEqual({ message: true, properties: true });
    // What a logger prints of it (stack and properties): a few lines, not the request.
    expect(inspect(error, { depth: null }).length).toBeLessThan(4_096);
    expect(error!.key).toBe('an object of class IncomingMessage');
  });
});
