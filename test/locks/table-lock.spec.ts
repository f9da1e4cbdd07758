import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import pg from 'pg';
import { Column, DataSource, Entity, PrimaryGeneratedColumn } from 'typeorm';
import {
  InvalidOptionError,
  InvalidTableNameError,
  LockNotAcquiredError,
  LockRequiresTransactionError,
  LockService,
  LockTimeoutError,
  Propagation,
  TableLock,
  TableLockMode,
  TableNotFoundError,
  TransactionHost,
} from '../../lib/index.js';
import { createTestDatabase, expectAllReleased, type TestDatabase } from '../support/database.js';
import { eventually, gate } from '../support/gate.js';
import { createTestApp } from '../support/nest-app.js';

@Entity({ name: 'posts' })
class Post {
  @PrimaryGeneratedColumn() id!: number;
  @Column() title!: string;
}

// A schema-qualified table whose name needs quoting (capitals, a space).
@Entity({ schema: 'archive', name: 'Archived Posts' })
class ArchivedPost {
  @PrimaryGeneratedColumn() id!: number;
}

/** Modes of pg_locks by LOCK TABLE mode. */
const PG_LOCKS_MODE: Record<TableLockMode, string> = {
  'ACCESS SHARE': 'AccessShareLock',
  'ROW SHARE': 'RowShareLock',
  'ROW EXCLUSIVE': 'RowExclusiveLock',
  'SHARE UPDATE EXCLUSIVE': 'ShareUpdateExclusiveLock',
  SHARE: 'ShareLock',
  'SHARE ROW EXCLUSIVE': 'ShareRowExclusiveLock',
  EXCLUSIVE: 'ExclusiveLock',
  'ACCESS EXCLUSIVE': 'AccessExclusiveLock',
};

@Injectable()
class Posts {
  constructor(readonly tx: TransactionHost) {}

  /** Set by a test: what getOrCreate waits for while holding its lock. */
  holdOpen: Promise<void> = Promise.resolve();

  @TableLock('SHARE ROW EXCLUSIVE', [Post, ArchivedPost])
  async getOrCreate(title: string): Promise<number> {
    await this.holdOpen;
    const found: { id: number }[] = await this.tx.manager.query('SELECT id FROM posts WHERE title = $1', [title]);
    if (found[0]) return found[0].id;
    const [created]: { id: number }[] = await this.tx.manager.query('INSERT INTO posts (title) VALUES ($1) RETURNING id', [title]);
    return created!.id;
  }

  @TableLock('EXCLUSIVE', 'posts', { nowait: true })
  async nowait(): Promise<string> {
    return 'ran';
  }

  @TableLock('EXCLUSIVE', ['posts'], { timeoutMs: 30 })
  async withTimeout(): Promise<string> {
    return 'ran';
  }

  @TableLock('ACCESS SHARE', ['public.posts'], { propagation: Propagation.MANDATORY })
  async mandatory(): Promise<string> {
    return 'ran';
  }
}

// Connections: app pool 6 + an admin and a writer client.
describe('@TableLock and lockTables()', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let locks: LockService;
  let tx: TransactionHost;
  let posts: Posts;
  let dataSource: DataSource;
  let admin: pg.Client;

  /** Table locks held right now on `table` ('posts' or a regclass text), by mode. */
  // Not SIReadLock: the predicate locks of SERIALIZABLE transactions (the database's default in .ci/serializable.sh) are
  // no lock anyone took, and outlive the transactions that read.
  const tableLocks = async (table: string) =>
    (
      await admin.query<{ mode: string; granted: boolean }>(
        `SELECT mode, granted FROM pg_locks WHERE locktype = 'relation' AND relation = to_regclass($1) AND mode <> 'SIReadLock'`,
        [table],
      )
    ).rows;

  beforeAll(async () => {
    db = await createTestDatabase();
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query('CREATE SCHEMA archive');
    app = await createTestApp({ url: db.url, providers: [Posts], entities: [Post, ArchivedPost], poolSize: 6 });
    locks = app.get(LockService);
    tx = app.get(TransactionHost);
    posts = app.get(Posts);
    dataSource = app.get(DataSource);
  });
  afterAll(async () => {
    await admin?.end();
    await app?.close();
    await db?.drop();
  });

  it('shows the mode in pg_locks on the entities\' schema-qualified tables while the method runs', async () => {
    const release = gate();
    posts.holdOpen = release.opened;
    const running = posts.getOrCreate('first');
    await eventually(async () => (await tableLocks('archive."Archived Posts"')).length === 1);
    expect(await tableLocks('archive."Archived Posts"')).toEqual([{ mode: 'ShareRowExclusiveLock', granted: true }]);
    expect(await tableLocks('posts')).toEqual([{ mode: 'ShareRowExclusiveLock', granted: true }]);
    release.open();
    posts.holdOpen = Promise.resolve();
    await running;
    expect(await tableLocks('posts')).toEqual([]);
  });

  it.each(Object.values(TableLockMode))('takes %s as that mode', async (mode) => {
    const seen = await locks.withTableLock('posts', mode, () => tableLocks('posts'));
    expect(seen).toContainEqual({ mode: PG_LOCKS_MODE[mode], granted: true });
  });

  it('makes a conflicting writer wait until the transaction ends; callers of the method take turns', async () => {
    const release = gate();
    posts.holdOpen = release.opened;
    const running = posts.getOrCreate('turns');
    await eventually(async () => (await tableLocks('posts')).length === 1);
    const writerClient = new pg.Client({ connectionString: db.url });
    await writerClient.connect();
    const writer = writerClient.query(`INSERT INTO posts (title) VALUES ('from a writer')`).finally(() => writerClient.end());
    // holdOpen stays release.opened: the first caller's body may not have read it yet (PostgreSQL shows its lock a
    // moment before the body runs); the second caller gets the lock once the first committed, after the release.
    const second = posts.getOrCreate('turns');
    // Tables are locked in sorted order: the second caller queues on "archive"."Archived Posts" first.
    const waiting = async () => [...(await tableLocks('posts')), ...(await tableLocks('archive."Archived Posts"'))].filter((l) => !l.granted);
    await eventually(async () => (await waiting()).length === 2);
    expect(await waiting()).toEqual(expect.arrayContaining([{ mode: 'RowExclusiveLock', granted: false }, { mode: 'ShareRowExclusiveLock', granted: false }]));
    release.open();
    posts.holdOpen = Promise.resolve();
    await writer;
    const ids = [await running, await second];
    expect(ids[0]).toBe(ids[1]); // the second caller found the row the first created: no duplicate
  });

  it('reports a busy table: nowait → LockNotAcquiredError, timeoutMs → LockTimeoutError; a joined caller\'s transaction stays usable', async () => {
    const release = gate();
    posts.holdOpen = release.opened;
    const running = posts.getOrCreate('busy');
    await eventually(async () => (await tableLocks('posts')).length === 1);
    await expect(posts.nowait()).rejects.toBeInstanceOf(LockNotAcquiredError);
    await expect(posts.withTimeout()).rejects.toBeInstanceOf(LockTimeoutError);
    const after = await tx.run(async () => {
      await tx.manager.query('SELECT 1');
      await expect(locks.lockTables(Post, 'EXCLUSIVE', { timeoutMs: 20 })).rejects.toBeInstanceOf(LockTimeoutError);
      await expect(locks.lockTables(Post, 'EXCLUSIVE', { nowait: true })).rejects.toBeInstanceOf(LockNotAcquiredError);
      const [{ lock_timeout }] = await tx.manager.query('SHOW lock_timeout');
      return lock_timeout;
    });
    expect(after).toBe('0');
    release.open();
    posts.holdOpen = Promise.resolve();
    await running;
    await expect(posts.nowait()).resolves.toBe('ran');
    await expectAllReleased(dataSource);
  });

  it('refuses an invalid mode, name or propagation when the decorator is applied, naming what is valid', () => {
    expect(() => TableLock('EXCLUSIVE; DROP TABLE posts' as never, ['posts'])).toThrow(InvalidOptionError);
    expect(() => TableLock('exclusive' as never, ['posts'])).toThrow(/"ACCESS SHARE", "ROW SHARE", .*"ACCESS EXCLUSIVE"/);
    for (const hostile of ['posts; DROP TABLE posts', 'posts"', '"posts"', 'a.b.c', '', 'pos ts', 'x'.repeat(64), 'posts.']) {
      expect(() => TableLock('SHARE', [hostile])).toThrow(InvalidTableNameError);
    }
    expect(() => TableLock('SHARE', [])).toThrow(InvalidOptionError);
    expect(() => TableLock('SHARE', ['posts'], { propagation: Propagation.NOT_SUPPORTED as never })).toThrow(/a lock needs a transaction/);
    expect(() => TableLock('SHARE', ['posts'], { nowait: true, timeoutMs: 5 })).toThrow(InvalidOptionError);
  });

  it('refuses hostile names and non-entities at run time too, and leaves the tables alone', async () => {
    await tx.run(async () => {
      await expect(locks.lockTables(`posts"; DROP TABLE posts; --`, 'SHARE')).rejects.toBeInstanceOf(InvalidTableNameError);
      await expect(locks.lockTables(class NotAnEntity {}, 'SHARE')).rejects.toThrow(/NotAnEntity/);
    });
    await expect(locks.withTableLock('no_such_table', 'SHARE', () => 1)).rejects.toBeInstanceOf(TableNotFoundError);
    await expect(dataSource.query('SELECT count(*)::int AS n FROM posts')).resolves.toEqual([{ n: expect.any(Number) }]);
  });

  it('says a table lock needs a transaction where none is active or allowed', async () => {
    await expect(locks.lockTables('posts', 'SHARE')).rejects.toBeInstanceOf(LockRequiresTransactionError);
    await expect(posts.mandatory()).rejects.toThrow(/requires an active transaction/);
    await expect(tx.run(() => posts.mandatory())).resolves.toBe('ran');
  });
});
