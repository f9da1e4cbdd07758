import { afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { DataSource, Repository } from 'typeorm';
import {
  InjectTxRepository,
  InvalidOptionError,
  RollbackOnlyError,
  SerializationRetriesExhaustedError,
  Transactional,
  TransactionHost,
  TransactionTimeoutError,
} from '../../lib/index.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { expectAllReleased } from '../support/database.js';
import { RoundTripLog } from '../support/round-trips.js';
import { Item, TransactionEventCounter } from './fixtures.js';
import { useTestApp } from '../support/test-app.js';

class Boom extends Error {}

@Injectable()
class ItemService {
  constructor(
    readonly tx: TransactionHost,
    @InjectTxRepository(Item) readonly items: Repository<Item>,
  ) {}

  @Transactional()
  async create(name: string, fail = false): Promise<Item> {
    const item = await this.items.save(this.items.create({ name }));
    if (fail) throw new Boom('after save');
    return item;
  }

  @Transactional()
  async saveManyThenThrow(names: string[]): Promise<void> {
    await this.items.save(names.map((name) => this.items.create({ name })));
    throw new Boom('after saving several');
  }

  @Transactional()
  async threeStatements(): Promise<void> {
    await this.tx.manager.query('SELECT 1');
    await this.tx.manager.query('SELECT 2');
    await this.tx.manager.query('SELECT 3');
  }

  @Transactional({ isolation: 'SERIALIZABLE', readOnly: true, timeoutMs: 5_000 })
  async threeStatementsWithOptions(): Promise<void> {
    await this.threeStatementsBody();
  }

  private async threeStatementsBody(): Promise<void> {
    await this.tx.manager.query('SELECT 1');
    await this.tx.manager.query('SELECT 2');
    await this.tx.manager.query('SELECT 3');
  }

  @Transactional({ isolation: 'REPEATABLE READ' })
  async isolation(): Promise<string> {
    const [row] = await this.tx.manager.query('SHOW transaction_isolation');
    return row.transaction_isolation;
  }

  @Transactional({ readOnly: true })
  async writeInReadOnly(): Promise<void> {
    await this.items.save(this.items.create({ name: 'read-only' }));
  }

  @Transactional({ timeoutMs: 100 })
  async slow(): Promise<void> {
    await this.tx.manager.query('SELECT pg_sleep(5)');
  }

  @Transactional()
  async catchesInner(name: string): Promise<void> {
    await this.items.save(this.items.create({ name }));
    try {
      await this.create(`${name}-inner`, true);
    } catch {
      // swallowing the inner failure must not let the outer commit half the work
    }
  }

  @Transactional()
  async catchesFailedStatement(name: string): Promise<void> {
    await this.items.save(this.items.create({ name }));
    await this.tx.manager.query('SELECT * FROM no_such_table').catch(() => undefined);
  }

  @Transactional()
  async parallelQueries(n: number): Promise<number[]> {
    const rows = await Promise.all(
      Array.from({ length: n }, (_, i) => this.tx.manager.query('SELECT $1::int AS i, txid_current() AS txid', [i])),
    );
    return rows.map(([row]) => Number(row.txid));
  }

  @Transactional()
  async ownTransaction(name: string): Promise<{ txid: string; visible: string[] }> {
    await this.items.save(this.items.create({ name }));
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
    const [{ txid }] = await this.tx.manager.query('SELECT txid_current()::text AS txid');
    const visible = await this.tx.manager.query(`SELECT name FROM tx_item WHERE name LIKE 'parallel-%'`);
    return { txid, visible: visible.map((r: { name: string }) => r.name) };
  }
}

/** A write skew under SERIALIZABLE: each caller reads the sum, then inserts based on it. */
@Injectable()
class SkewService {
  attempts = 0;
  constructor(readonly tx: TransactionHost) {}

  async skew(retries: number, rendezvous: () => Promise<void>): Promise<void> {
    await this.tx.run({ isolation: 'SERIALIZABLE', retries }, async () => {
      this.attempts++;
      const [{ total }] = await this.tx.manager.query(`SELECT coalesce(sum(value), 0)::int AS total FROM tx_item WHERE name LIKE 'skew-%'`);
      await rendezvous();
      await this.tx.manager.query(`INSERT INTO tx_item (name, value) VALUES ($1, $2)`, [`skew-${Math.random()}`, total + 1]);
    });
  }
}

describe('@Transactional on provider methods', () => {
  const testApp = useTestApp({ entities: [Item], subscribers: [TransactionEventCounter], providers: [ItemService, SkewService], poolSize: 12 });
  let service: ItemService;
  let dataSource: DataSource;
  const events = () => ({ starts: TransactionEventCounter.starts, commits: TransactionEventCounter.commits, rollbacks: TransactionEventCounter.rollbacks });
  const names = async () => (await dataSource.query('SELECT name FROM tx_item ORDER BY name')).map((r: { name: string }) => r.name);

  beforeAll(async () => {
    service = testApp.get(ItemService);
    dataSource = testApp.dataSource;
  });
  beforeEach(async () => {
    await dataSource.query('TRUNCATE tx_item');
    TransactionEventCounter.reset();
  });
  afterEach(async () => {
    await expectAllReleased(dataSource);
  });

  it('commits, and rolls back when the method throws', async () => {
    await service.create('kept');
    await expect(service.create('dropped', true)).rejects.toBeInstanceOf(Boom);
    expect(await names()).toEqual(['kept']);
  });

  it('makes repository.save() of several entities join the transaction: a throw leaves nothing, subscribers see one transaction', async () => {
    const log = RoundTripLog.attach(dataSource);
    await expect(service.saveManyThenThrow(['a', 'b', 'c'])).rejects.toBeInstanceOf(Boom);
    log.stop();
    expect(await names()).toEqual([]);
    expect(log.sent.filter((sql) => /START TRANSACTION|^BEGIN/i.test(sql))).toHaveLength(1);
    expect(events()).toEqual({ starts: 1, commits: 0, rollbacks: 1 });

    await service.create('one');
    expect(events()).toEqual({ starts: 2, commits: 1, rollbacks: 1 });
  });

  it('sends isolation, read-only and timeout with BEGIN: 5 round trips for 3 statements, with or without options', async () => {
    const log = RoundTripLog.attach(dataSource);
    await service.threeStatements();
    const plain = [...log.sent];
    log.reset();
    await service.threeStatementsWithOptions();
    log.stop();
    expect(plain).toHaveLength(5);
    expect(plain).toEqual(['BEGIN', 'SELECT 1', 'SELECT 2', 'SELECT 3', 'COMMIT']);
    expect(log.sent).toHaveLength(5);
    expect(log.sent[0]).toContain('BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY;\nSET LOCAL statement_timeout = 5000');
    expect(log.sent[4]).toBe('COMMIT');
  });

  it('applies the isolation level', async () => {
    expect(await service.isolation()).toBe('repeatable read');
  });

  it('rejects a write in a read-only transaction', async () => {
    await expect(service.writeInReadOnly()).rejects.toThrow(/read-only transaction/);
    expect(await names()).toEqual([]);
  });

  it('cancels a statement that outlives timeoutMs with TransactionTimeoutError', async () => {
    await expect(service.slow()).rejects.toBeInstanceOf(TransactionTimeoutError);
  });

  it('refuses to commit when an inner REQUIRED call threw and the outer caught it', async () => {
    const error = await service.catchesInner('outer').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RollbackOnlyError);
    expect((error as RollbackOnlyError).cause).toBeInstanceOf(Boom);
    expect(await names()).toEqual([]);
  });

  it('refuses to report a commit after PostgreSQL aborted the transaction', async () => {
    await expect(service.catchesFailedStatement('aborted')).rejects.toBeInstanceOf(RollbackOnlyError);
    expect(await names()).toEqual([]);
  });

  it('serialises Promise.all queries on the transaction connection', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    const txids = await service.parallelQueries(25);
    process.off('warning', onWarning);
    expect(new Set(txids).size).toBe(1);
    expect(warnings.filter((w) => /concurrent|already executing/i.test(w))).toEqual([]);
  });

  it('keeps 100 concurrent contexts apart: each sees only its own transaction and its own uncommitted row', async () => {
    const results = valuesOf(await concurrently(100, (i) => service.ownTransaction(`parallel-${i}`)));
    expect(new Set(results.map((r) => r.txid)).size).toBe(100);
    results.forEach((r, i) => expect(r.visible).toContain(`parallel-${i}`));
    // Rows of transactions still open elsewhere are never visible; committed ones may be.
    expect((await names()).length).toBe(100);
  });

  it('retries a serialization failure (write skew) and then succeeds', async () => {
    const skew = testApp.get(SkewService);
    skew.attempts = 0;
    let arrived = 0;
    let release!: () => void;
    const bothRead = new Promise<void>((resolve) => (release = resolve));
    // Both first attempts read before either writes; retries pass straight through.
    const rendezvous = async () => {
      if (++arrived === 2) release();
      await bothRead;
    };
    await Promise.all([skew.skew(5, rendezvous), skew.skew(5, rendezvous)]);
    const values = (await dataSource.query(`SELECT value FROM tx_item ORDER BY value`)).map((r: { value: number }) => r.value);
    expect(values).toEqual([1, 2]);
    expect(skew.attempts).toBeGreaterThan(2);
  });

  it('gives up with SerializationRetriesExhaustedError when every attempt conflicts', async () => {
    const tx = testApp.get(TransactionHost);
    const [{ id }] = await dataSource.query(`INSERT INTO tx_item (name) VALUES ('contended') RETURNING id`);
    let attempts = 0;
    const error = await tx
      .run({ isolation: 'REPEATABLE READ', retries: 2 }, async () => {
        attempts++;
        await tx.manager.query('SELECT value FROM tx_item WHERE id = $1', [id]);
        // Another connection changes the row after our snapshot: our update can never serialise.
        await tx.run({ propagation: 'NOT_SUPPORTED' }, () => dataSource.query('UPDATE tx_item SET value = value + 1 WHERE id = $1', [id]));
        await tx.manager.query('UPDATE tx_item SET value = value + 10 WHERE id = $1', [id]);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SerializationRetriesExhaustedError);
    expect((error as SerializationRetriesExhaustedError).attempts).toBe(3);
    expect(attempts).toBe(3);
    const [{ value }] = await dataSource.query('SELECT value FROM tx_item WHERE id = $1', [id]);
    expect(value).toBe(3);
  });

  it('rejects unknown propagation and isolation names when the decorator is applied, naming the valid values', () => {
    expect(() => Transactional({ propagation: 'SOMETIMES' as never })).toThrow(InvalidOptionError);
    expect(() => Transactional({ propagation: 'SOMETIMES' as never })).toThrow(/"REQUIRED", "REQUIRES_NEW", "NESTED"/);
    expect(() => Transactional({ isolation: 'CHAOS' as never })).toThrow(/"READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"/);
    expect(() => Transactional({ timeoutMs: -1 })).toThrow(InvalidOptionError);
  });
});
