import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { getRepositoryToken, TypeOrmModule } from '@nestjs/typeorm';
import pg from 'pg';
import request from 'supertest';
import { QueryFailedError, type Repository } from 'typeorm';
import { TransactionHost, TxLockModule } from '../../lib/index.js';
import { Note } from '../../sample/src/notes/note.entity.js';
import { notesRlsStatements, tenantSettings } from '../../sample/src/notes/notes-rls.js';
import { NotesModule } from '../../sample/src/notes/notes.module.js';
import { createTestDatabase, directUrl, poolerUrl, type TestDatabase } from '../support/database.js';

// The app's role: no superuser, no BYPASSRLS, not the table's owner. Roles belong to the server, not to one database,
// so every test file that needs it creates it if missing (.ci/pgbouncer.sh lets it through PgBouncer too).
const APP_ROLE = 'txlock_rls_app';

describe(`sample NotesModule: row-level security with the tenant in the transaction's settings${poolerUrl() ? ' (through PgBouncer, transaction mode)' : ''}`, () => {
  let db: TestDatabase;
  let admin: pg.Client;
  let app: INestApplication;
  let server: ReturnType<INestApplication['getHttpServer']>;
  const rows = async () =>
    (await admin.query<{ tenant_id: string; slug: string; body: string }>('SELECT tenant_id, slug, body FROM notes ORDER BY tenant_id, slug')).rows;
  const as = (tenant: string | undefined) => ({
    get: () => (tenant ? request(server).get('/notes').set('x-tenant-id', tenant) : request(server).get('/notes')),
    put: (body: string) => request(server).put('/notes').set('x-tenant-id', tenant!).send({ body }),
    post: (slug: string, body: string) => request(server).post('/notes').set('x-tenant-id', tenant!).send({ slug, body }),
  });

  beforeAll(async () => {
    db = await createTestDatabase();
    admin = new pg.Client({ connectionString: directUrl(db.url) });
    await admin.connect();
    await admin.query(`DO $$ BEGIN CREATE ROLE ${APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`);
    for (const statement of notesRlsStatements(APP_ROLE)) await admin.query(statement);
    await admin.query(`INSERT INTO notes (tenant_id, slug, body) VALUES ('a', 'a1', 'first of a'), ('a', 'a2', 'second of a'), ('b', 'b1', 'only of b')`);
    const url = new URL(db.url);
    [url.username, url.password] = [APP_ROLE, ''];
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ type: 'postgres', url: url.toString(), entities: [Note], synchronize: false, extra: { max: 3 } }),
        TxLockModule.forRoot({ settings: tenantSettings }),
        NotesModule,
      ],
    }).compile();
    app = moduleRef.createNestApplication({ logger: ['error', 'warn'] });
    await app.listen(0, '127.0.0.1');
    server = app.getHttpServer();
  });

  afterAll(async () => {
    await app?.close();
    await admin?.end();
    await db?.drop();
  });

  it('the app really runs as a role row-level security applies to', async () => {
    const [role] = await app.get(TransactionHost).dataSource.query(`SELECT current_user AS name, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`);
    expect(role).toEqual({ name: APP_ROLE, rolsuper: false, rolbypassrls: false });
  });

  it("a query that forgot its WHERE reads only the request's tenant's rows; without a tenant, none", async () => {
    const a = await as('a').get();
    expect(a.body.map((note: Note) => [note.tenantId, note.slug])).toEqual([
      ['a', 'a1'],
      ['a', 'a2'],
    ]);
    expect((await as('b').get()).body.map((note: Note) => note.slug)).toEqual(['b1']);
    expect((await as(undefined).get()).body).toEqual([]);
  });

  it("an UPDATE that forgot its WHERE rewrites only the tenant's rows", async () => {
    expect((await as('a').put('rewritten by a')).body).toEqual({ rewritten: 2 });
    expect(await rows()).toEqual([
      { tenant_id: 'a', slug: 'a1', body: 'rewritten by a' },
      { tenant_id: 'a', slug: 'a2', body: 'rewritten by a' },
      { tenant_id: 'b', slug: 'b1', body: 'only of b' },
    ]);
  });

  it("writing a row of another tenant, or moving one there, is refused by the policy, and changes nothing", async () => {
    const tx = app.get(TransactionHost);
    const notes = app.get<Repository<Note>>(getRepositoryToken(Note));
    const asA = { settings: { 'app.tenant_id': 'a' } };
    const insert = tx.run(asA, () => notes.insert({ tenantId: 'b', slug: 'planted', body: 'by a' }));
    await expect(insert).rejects.toBeInstanceOf(QueryFailedError);
    await expect(insert).rejects.toMatchObject({ driverError: { code: '42501' } });
    const move = tx.run(asA, () => notes.createQueryBuilder().update().set({ tenantId: 'b' }).execute());
    await expect(move).rejects.toMatchObject({ driverError: { code: '42501' } });
    expect((await rows()).map((row) => [row.tenant_id, row.slug])).toEqual([
      ['a', 'a1'],
      ['a', 'a2'],
      ['b', 'b1'],
    ]);
  });

  it("the library's own statement outside a transaction (get-or-create) runs with the request's tenant too", async () => {
    const created = await as('a').post('a3', 'third of a');
    expect(created.status).toBe(201);
    expect(created.body.created).toBe(true);
    // a's own "b1": b's row of that name is invisible to a, and untouched.
    expect((await as('a').post('b1', 'a note named b1')).body.created).toBe(true);
    expect((await as('a').post('a3', 'again')).body.created).toBe(false);
    expect((await rows()).map((row) => [row.tenant_id, row.slug, row.body])).toEqual([
      ['a', 'a1', 'rewritten by a'],
      ['a', 'a2', 'rewritten by a'],
      ['a', 'a3', 'third of a'],
      ['a', 'b1', 'a note named b1'],
      ['b', 'b1', 'only of b'],
    ]);
  });

  it('60 concurrent requests of two tenants over 3 pooled connections: each sees its own rows only', async () => {
    const answers = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const tenant = i % 2 === 0 ? 'a' : 'b';
        const response = await as(tenant).get();
        return { tenant, seen: [...new Set(response.body.map((note: Note) => note.tenantId))] };
      }),
    );
    for (const { tenant, seen } of answers) expect(seen).toEqual([tenant]);
  });
});
