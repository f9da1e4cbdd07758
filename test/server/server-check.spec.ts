import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import pg from 'pg';
import { TxLockModule, UnsupportedServerError } from '../../lib/index.js';
import { createTestDatabase, directUrl, type TestDatabase } from '../support/database.js';

const COCKROACH = 'CockroachDB CCL v23.1.11 (x86_64-pc-linux-gnu, built 2023/11/13 16:39:00, go1.19.13)';

// A real PostgreSQL made to answer like a look-alike: functions of the same names in a schema searched before
// pg_catalog (set on the database, so every new connection, through a pooler too, sees them).
async function impersonate(url: string, functions: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('CREATE SCHEMA lookalike');
    for (const sql of functions) await client.query(sql);
    await client.query(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = lookalike, pg_catalog, public', current_database()); END $$`);
  } finally {
    await client.end();
  }
}

// CockroachDB's advisory lock functions exist and answer true without locking anything.
const NO_OP_LOCK = `CREATE FUNCTION lookalike.pg_try_advisory_xact_lock_shared(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true'`;

describe('the server is identified at bootstrap', () => {
  let db: TestDatabase;
  let app: INestApplication | undefined;

  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await app?.close().catch(() => undefined);
    app = undefined;
    await db.drop();
  });

  const boot = async () => {
    const moduleRef = await Test.createTestingModule({
      // Straight to the server: a pooler's server connections opened before impersonate() keep the old search_path.
      imports: [TypeOrmModule.forRoot({ type: 'postgres', url: directUrl(db.url), extra: { max: 2 } }), TxLockModule.forRoot()],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
  };

  it('boots on the PostgreSQL the suite runs on', async () => {
    await expect(boot()).resolves.toBeUndefined();
  });

  it('refuses to start on an engine that names itself otherwise and whose advisory locks are no-ops', async () => {
    await impersonate(db.url, [`CREATE FUNCTION lookalike.version() RETURNS text LANGUAGE sql AS $$SELECT '${COCKROACH}'::text$$`, NO_OP_LOCK]);
    const error = await boot().then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(UnsupportedServerError);
    expect(error).toMatchObject({ engine: 'CockroachDB', serverVersion: COCKROACH });
    expect((error as Error).message).toContain('PostgreSQL 13 to 18');
  });

  it('refuses to start on a server that says PostgreSQL but grants advisory locks that never show in pg_locks', async () => {
    await impersonate(db.url, [NO_OP_LOCK]);
    const error = await boot().then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(UnsupportedServerError);
    expect((error as Error).message).toMatch(/lock nothing/);
  });
});
