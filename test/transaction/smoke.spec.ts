import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { TransactionHost, Transactional } from '../../lib/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import type { INestApplication } from '@nestjs/common';

@Injectable()
class Svc {
  constructor(readonly tx: TransactionHost) {}
  @Transactional()
  async inTx() {
    const rows = await this.tx.manager.query('SELECT txid_current_if_assigned() AS x, now() = statement_timestamp() AS same');
    return { active: this.tx.isActive, rows };
  }
}

describe('smoke', () => {
  let db: TestDatabase;
  let app: INestApplication;
  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ url: db.url, providers: [Svc] });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });
  it('runs a transaction', async () => {
    const r = await app.get(Svc).inTx();
    expect(r.active).toBe(true);
    expect(app.get(DataSource).isInitialized).toBe(true);
  });
});
