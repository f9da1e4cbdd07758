import { beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Param, Post } from '@nestjs/common';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { AdvisoryLock, LockService, TableLock } from '../../lib/index.js';
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

// Connections: app pool 4.
describe('lock errors over HTTP', () => {
  const testApp = useTestApp({ controllers: [OrdersController], http: true, poolSize: 4 });
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
});
