import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication, Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { race } from 'nestjs-txlock/testing';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

// The README's Quick start (examples/quick-start.ts, checked identical to the README block in CI), run as a
// user runs it: concurrent transfers in both directions between two accounts.
describe('the Quick start', () => {
  let db: TestDatabase;
  let app: INestApplication;
  const previousUrl = process.env.DATABASE_URL;

  beforeAll(async () => {
    db = await createTestDatabase();
    process.env.DATABASE_URL = db.url; // what its TypeOrmModule.forRoot() reads, when its module is loaded
    const { AppModule } = (await import('../../examples/quick-start.js')) as { AppModule: Type };
    app = (await Test.createTestingModule({ imports: [AppModule] }).compile()).createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
    process.env.DATABASE_URL = previousUrl;
  });

  it('50 concurrent transfers in opposite directions: no call fails, no money appears or vanishes', async () => {
    const server = app.getHttpServer();
    const a = (await request(server).post('/accounts').send({ balance: 1_000 }).expect(201)).body.id as number;
    const b = (await request(server).post('/accounts').send({ balance: 1_000 }).expect(201)).body.id as number;
    const { values } = await race(50, (i) =>
      request(server)
        .post(`/accounts/${i % 2 === 0 ? a : b}/transfers`)
        .send({ to: i % 2 === 0 ? b : a, amount: 10 + (i % 3) }),
    );
    expect(values.map((response) => response.status)).toEqual(Array(50).fill(201));
    const sentFromA = Array.from({ length: 50 }, (_, i) => i).filter((i) => i % 2 === 0).reduce((sum, i) => sum + 10 + (i % 3), 0);
    const sentFromB = Array.from({ length: 50 }, (_, i) => i).filter((i) => i % 2 === 1).reduce((sum, i) => sum + 10 + (i % 3), 0);
    expect((await request(server).get(`/accounts/${a}`).expect(200)).body.balance).toBe(1_000 - sentFromA + sentFromB);
    expect((await request(server).get(`/accounts/${b}`).expect(200)).body.balance).toBe(1_000 - sentFromB + sentFromA);
  });

  it('refuses a transfer the source cannot cover, and changes nothing', async () => {
    const server = app.getHttpServer();
    const poor = (await request(server).post('/accounts').send({ balance: 5 }).expect(201)).body.id as number;
    const other = (await request(server).post('/accounts').send({ balance: 0 }).expect(201)).body.id as number;
    await request(server).post(`/accounts/${poor}/transfers`).send({ to: other, amount: 6 }).expect(400);
    expect((await request(server).get(`/accounts/${poor}`).expect(200)).body.balance).toBe(5);
  });
});
