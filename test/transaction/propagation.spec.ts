import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, Repository } from 'typeorm';
import {
  InjectTxRepository,
  Propagation,
  Transactional,
  TransactionHost,
  TransactionNotAllowedError,
  TransactionRequiredError,
} from '../../lib/index.js';
import { createTestDatabase, expectAllReleased, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import { Item } from './fixtures.js';

class Boom extends Error {}

/** Inner steps, each with one propagation; they record the transaction id they ran in. */
@Injectable()
class Inner {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTxRepository(Item) private readonly items: Repository<Item>,
  ) {}

  txid(): Promise<string | null> {
    return this.tx.manager.query('SELECT txid_current_if_assigned()::text AS id').then(([row]) => row.id);
  }

  private async write(name: string, fail: boolean): Promise<string | null> {
    await this.items.insert({ name });
    if (fail) throw new Boom(name);
    return this.txid();
  }

  @Transactional() required(name: string, fail = false) { return this.write(name, fail); }
  @Transactional({ propagation: 'REQUIRES_NEW' }) requiresNew(name: string, fail = false) { return this.write(name, fail); }
  @Transactional({ propagation: 'NESTED' }) nested(name: string, fail = false) { return this.write(name, fail); }
  @Transactional({ propagation: 'SUPPORTS' }) supports(name: string) { return this.write(name, false); }
  @Transactional({ propagation: 'NOT_SUPPORTED' }) async notSupported(): Promise<{ active: boolean; seen: number }> {
    const [{ n }] = await this.tx.manager.query(`SELECT count(*)::int AS n FROM tx_item WHERE name = 'outer'`);
    return { active: this.tx.isActive, seen: n };
  }
  @Transactional({ propagation: 'MANDATORY' }) mandatory(name: string) { return this.write(name, false); }
  @Transactional({ propagation: 'NEVER' }) never() { return Promise.resolve(this.tx.isActive); }
}

@Injectable()
class Outer {
  constructor(
    readonly tx: TransactionHost,
    readonly inner: Inner,
    @InjectTxRepository(Item) readonly items: Repository<Item>,
    @InjectRepository(Item) readonly plainItems: Repository<Item>,
  ) {}

  /** Writes 'outer', runs `step` and returns the outer txid with the step's result; rolls back when asked. */
  @Transactional()
  async around<T>(step: () => Promise<T>, rollback = false, name = 'outer'): Promise<{ outer: string | null; step: T }> {
    await this.items.insert({ name });
    const outer = await this.inner.txid();
    const result = await step();
    if (rollback) throw new Boom('outer rolls back');
    return { outer, step: result };
  }
}

describe('propagation', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let outer: Outer;
  let inner: Inner;
  let dataSource: DataSource;
  const names = async () => (await dataSource.query('SELECT name FROM tx_item ORDER BY name')).map((r: { name: string }) => r.name);

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ url: db.url, entities: [Item], providers: [Inner, Outer], poolSize: 6 });
    outer = app.get(Outer);
    inner = app.get(Inner);
    dataSource = app.get(DataSource);
  });
  beforeEach(() => dataSource.query('TRUNCATE tx_item'));
  afterEach(() => expectAllReleased(dataSource));
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('REQUIRED joins the outer transaction and begins one when there is none', async () => {
    const { outer: o, step } = await outer.around(() => inner.required('inner'));
    expect(step).toBe(o);
    await expect(outer.around(() => inner.required('inner2'), true, 'outer2')).rejects.toBeInstanceOf(Boom);
    await inner.required('alone');
    expect(await names()).toEqual(['alone', 'inner', 'outer']);
  });

  it('REQUIRES_NEW commits on its own connection while the outer rolls back', async () => {
    let innerTx: string | null = null;
    await expect(outer.around(async () => (innerTx = await inner.requiresNew('independent')), true)).rejects.toBeInstanceOf(Boom);
    expect(innerTx).not.toBeNull();
    expect(await names()).toEqual(['independent']);
  });

  it('REQUIRES_NEW rolls back alone when it fails inside a committing outer', async () => {
    await outer.around(() => inner.requiresNew('fails', true).catch(() => 'caught'));
    expect(await names()).toEqual(['outer']);
  });

  it('NESTED rolls back only to its savepoint; the outer commits the rest', async () => {
    const result = await outer.around(async () => {
      await inner.nested('kept');
      await inner.nested('undone', true).catch(() => undefined);
      return inner.nested('kept-too');
    });
    expect(result.step).toBe(result.outer);
    expect(await names()).toEqual(['kept', 'kept-too', 'outer']);
  });

  it('NESTED work is undone when the outer rolls back', async () => {
    await expect(outer.around(() => inner.nested('inner'), true)).rejects.toBeInstanceOf(Boom);
    expect(await names()).toEqual([]);
  });

  it('SUPPORTS joins when there is a transaction and runs without one otherwise', async () => {
    const { outer: o, step } = await outer.around(() => inner.supports('joined'));
    expect(step).toBe(o);
    await inner.supports('autocommit');
    expect(await names()).toEqual(['autocommit', 'joined', 'outer']);
  });

  it('NOT_SUPPORTED suspends the transaction: it runs outside and cannot see uncommitted outer rows', async () => {
    const { step } = await outer.around(() => inner.notSupported());
    expect(step).toEqual({ active: false, seen: 0 });
  });

  it('MANDATORY joins, and throws TransactionRequiredError without a transaction', async () => {
    const { outer: o, step } = await outer.around(() => inner.mandatory('joined'));
    expect(step).toBe(o);
    await expect(inner.mandatory('alone')).rejects.toThrow(TransactionRequiredError);
    await expect(inner.mandatory('alone')).rejects.toThrow(/Inner\.mandatory/);
  });

  it('NEVER throws TransactionNotAllowedError inside a transaction and runs outside one', async () => {
    await expect(outer.around(() => inner.never())).rejects.toBeInstanceOf(TransactionNotAllowedError);
    await expect(inner.never()).resolves.toBe(false);
  });

  it('TransactionHost.run takes the same options without a decorator', async () => {
    const tx = app.get(TransactionHost);
    const id = await tx.run({ propagation: Propagation.REQUIRED }, async () => {
      await tx.getRepository(Item).insert({ name: 'via-run' });
      return tx.run({ propagation: Propagation.NESTED }, () => inner.txid());
    });
    expect(id).not.toBeNull();
    expect(await names()).toEqual(['via-run']);
  });

  it('@InjectTxRepository and a plain @InjectRepository repository both join the transaction (joinDataSource, the default)', async () => {
    await expect(
      outer.around(async () => {
        await outer.plainItems.insert({ name: 'joined-plain' });
      }, true),
    ).rejects.toBeInstanceOf(Boom);
    expect(await names()).toEqual([]); // joinDataSource: false is covered in data-source-joining.spec.ts
    expect(outer.items).toBeInstanceOf(Repository);
  });
});

describe('afterCommit / afterRollback', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let tx: TransactionHost;

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ url: db.url, entities: [Item], poolSize: 4 });
    tx = app.get(TransactionHost);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('runs commit hooks once, in order, after the outermost commit and outside the transaction', async () => {
    const calls: string[] = [];
    await tx.run(async () => {
      tx.afterCommit(() => calls.push(`first:${tx.isActive}`));
      tx.afterRollback(() => calls.push('never'));
      await tx.run(async () => {
        tx.afterCommit(() => calls.push('inner-required'));
      });
      await tx.run({ propagation: 'NESTED' }, async () => {
        tx.afterCommit(() => calls.push('nested-released'));
      });
      expect(calls).toEqual([]);
    });
    expect(calls).toEqual(['first:false', 'inner-required', 'nested-released']);
  });

  it('runs rollback hooks after a rollback, drops commit hooks of a rolled-back savepoint, and survives a failing hook', async () => {
    const calls: string[] = [];
    await expect(
      tx.run(async () => {
        tx.afterRollback(() => {
          throw new Error('hook failure is logged, not thrown');
        });
        tx.afterRollback(() => calls.push('outer-rollback'));
        await tx
          .run({ propagation: 'NESTED' }, async () => {
            tx.afterCommit(() => calls.push('dropped'));
            tx.afterRollback(() => calls.push('savepoint-rollback'));
            throw new Boom('savepoint');
          })
          .catch(() => undefined);
        expect(calls).toEqual(['savepoint-rollback']);
        throw new Boom('outer');
      }),
    ).rejects.toBeInstanceOf(Boom);
    expect(calls).toEqual(['savepoint-rollback', 'outer-rollback']);
  });

  it('runs afterCommit at once outside a transaction', async () => {
    let ran = false;
    await tx.afterCommit(() => (ran = true));
    expect(ran).toBe(true);
  });
});

describe('NESTED calls started at once', () => {
  let db: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ url: db.url, entities: [Item], providers: [Inner, Outer], poolSize: 3 });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('take turns on the connection, so each failure rolls back only its own savepoint', async () => {
    const outer = app.get(Outer);
    const inner = app.get(Inner);
    await outer.around(() =>
      Promise.all(Array.from({ length: 10 }, (_, i) => inner.nested(`n${i}`, i % 2 === 1).catch(() => 'rolled back'))),
    );
    const rows = await app.get(DataSource).query('SELECT name FROM tx_item ORDER BY name');
    expect(rows.map((r: { name: string }) => r.name)).toEqual(['n0', 'n2', 'n4', 'n6', 'n8', 'outer']);
  });
});
