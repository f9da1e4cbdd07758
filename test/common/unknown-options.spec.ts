import { beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Column, Entity, PrimaryGeneratedColumn, Unique } from 'typeorm';
import {
  AdvisoryLock,
  AtomicService,
  CounterService,
  InvalidOptionError,
  LeaseService,
  LockService,
  ScheduledLock,
  SingleFlight,
  SingleFlightService,
  TableLock,
  Transactional,
  TransactionHost,
} from '../../lib/index.js';
import { useTestApp } from '../support/test-app.js';

@Entity('unknown_options_item')
@Unique(['name'])
class Item {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'int', default: 0 })
  stock!: number;
}

// Options are declared objects in JavaScript and in builds that do not type-check (SWC): a misspelt key
// (`kye`, `timeOutMs`) would be ignored without a word, and the lock would have another key, or no timeout.
// Every decorator refuses it when applied, and every call that takes options when made, before anything runs,
// naming the valid keys and the closest one, as TxLockModule.forRoot() does.
const typo = <T>(options: Record<string, unknown>) => options as T;

/** What `call` threw or rejected with: the message of an InvalidOptionError, else what happened. */
async function refusal(call: () => unknown): Promise<string> {
  try {
    await call();
  } catch (error) {
    return error instanceof InvalidOptionError ? error.message : `${(error as Error).name}: ${(error as Error).message}`;
  }
  return 'accepted';
}

const options = { isolation: 'SERIALIZABLE' } as Record<string, unknown>;

@Injectable()
class Jobs {
  ran = 0;

  @Transactional(options)
  async report(): Promise<void> {
    this.ran++;
  }
}

describe('unknown option keys', () => {
  const testApp = useTestApp({ entities: [Item], providers: [Jobs], txlock: { autoCreate: true } });

  it('every decorator refuses one when applied, saying which key was meant', async () => {
    const decorations: Record<string, () => unknown> = {
      '@Transactional': () => Transactional(typo({ isolaton: 'SERIALIZABLE' })),
      '@AdvisoryLock key': () => AdvisoryLock(typo({ kye: 'nightly' })),
      '@AdvisoryLock timeoutMs': () => AdvisoryLock(typo({ key: 'nightly', timeOutMs: 2_000 })),
      '@TableLock': () => TableLock('SHARE', ['unknown_options_item'], typo({ nowiat: true })),
      '@ScheduledLock': () => ScheduledLock('nightly', typo({ atMostForMs: 60_000, atleastForMs: 1_000 })),
      '@SingleFlight': () => SingleFlight(typo({ ttlMs: 1_000, namspace: 'reports' })),
    };
    const messages: Record<string, string> = {};
    for (const [label, decorate] of Object.entries(decorations)) messages[label] = await refusal(decorate);
    expect(messages).toEqual({
      '@Transactional': expect.stringMatching(/^Unknown @Transactional\(\) option "isolaton" \(did you mean "isolation"\?\): the options are .*"dataSource"/),
      '@AdvisoryLock key': expect.stringMatching(/^Unknown @AdvisoryLock\(\) option "kye" \(did you mean "key"\?\)/),
      '@AdvisoryLock timeoutMs': expect.stringMatching(/^Unknown @AdvisoryLock\(\) option "timeOutMs" \(did you mean "timeoutMs"\?\)/),
      '@TableLock': expect.stringMatching(/^Unknown @TableLock\(\) option "nowiat" \(did you mean "nowait"\?\)/),
      '@ScheduledLock': expect.stringMatching(/^Unknown @ScheduledLock\(\) option "atleastForMs" \(did you mean "atLeastForMs"\?\)/),
      '@SingleFlight': expect.stringMatching(/^Unknown @SingleFlight\(\) option "namspace" \(did you mean "namespace"\?\)/),
    });
    // Every key each decorator documents is still taken.
    expect(() => Transactional({ propagation: 'REQUIRES_NEW', isolation: 'SERIALIZABLE', readOnly: true, timeoutMs: 5, retries: 1, dataSource: 'default' })).not.toThrow();
    expect(() => AdvisoryLock({ key: 'a', onLocked: 'skip', timeoutMs: 5, shared: true, namespace: 1, propagation: 'REQUIRED', label: 'a', dataSource: 'default' })).not.toThrow();
    expect(() => AdvisoryLock({ keys: () => ['a'], nowait: true, scope: 'session' })).not.toThrow();
    expect(() => TableLock('SHARE', ['unknown_options_item'], { timeoutMs: 5, propagation: 'REQUIRED', dataSource: 'default' })).not.toThrow();
    expect(() => ScheduledLock('nightly', { atMostForMs: 60_000, atLeastForMs: 1_000, dataSource: 'default' })).not.toThrow();
    expect(() => SingleFlight({ key: 'a', ttlMs: 1_000, namespace: 'reports', timeoutMs: 5, dataSource: 'default' })).not.toThrow();
  });

  it('every call that takes options refuses one before it runs or sends anything', async () => {
    const tx = testApp.get(TransactionHost);
    const locks = testApp.get(LockService);
    const leases = testApp.get(LeaseService);
    const flights = testApp.get(SingleFlightService);
    const counters = testApp.get(CounterService);
    const atomic = testApp.get(AtomicService);
    let ran = 0;
    const work = async () => void ran++;
    const calls: Record<string, () => unknown> = {
      'TransactionHost.run': () => tx.run(typo({ isolaton: 'SERIALIZABLE' }), work),
      withAdvisoryLock: () => locks.withAdvisoryLock('k', work, typo({ timeOutMs: 100 })),
      tryAdvisoryLock: () => locks.tryAdvisoryLock('k', work, typo({ lable: 'k' })),
      lockTables: () => tx.run(() => locks.lockTables('unknown_options_item', 'SHARE', typo({ timeoutMS: 100 }))),
      withTableLock: () => locks.withTableLock('unknown_options_item', 'SHARE', work, typo({ nowiat: true })),
      'lease acquire': () => leases.acquire('job', typo({ atMostForMs: 1_000, renewEveryMs: 100 })),
      'lease run': () => leases.run('job', work, typo({ atMostForMs: 1_000, renewEvery: 100 })),
      'single flight': () => flights.run('report', work, typo({ ttlMs: 1_000, timeout: 100 })),
      increment: () => counters.increment('hits', 1, typo({ shard: 4 })),
      decrement: () => counters.decrement('hits', 1, typo({ windowMS: 1_000 })),
      tryIncrement: () => counters.tryIncrement('quota', 1, typo<{ max: number }>({ maxx: 10 })),
      tryDecrement: () => counters.tryDecrement('stock', 1, typo<{ min: number }>({ min: 0, bigInt: true })),
      get: () => counters.get('hits', typo({ bigInt: true })),
      getMany: () => counters.getMany(['hits'], typo({ bigInt: true })),
      incrementColumn: () => counters.incrementColumn(Item, { name: 'a' }, 'stock', 1, typo({ minn: 0 })),
      getOrCreate: () => atomic.getOrCreate(Item, { name: 'a' }, {}, typo({ lokc: 'advisory' })),
      bulkGetOrCreate: () => atomic.bulkGetOrCreate(Item, [{ name: 'a' }], typo({ conflictColumn: ['name'] })),
    };
    const messages: Record<string, string> = {};
    for (const [label, call] of Object.entries(calls)) messages[label] = await refusal(call);
    expect(messages).toEqual({
      'TransactionHost.run': expect.stringMatching(/^Unknown TransactionHost\.run\(\) option "isolaton" \(did you mean "isolation"\?\)/),
      withAdvisoryLock: expect.stringMatching(/^Unknown withAdvisoryLock\(\) option "timeOutMs" \(did you mean "timeoutMs"\?\)/),
      tryAdvisoryLock: expect.stringMatching(/^Unknown tryAdvisoryLock\(\) option "lable" \(did you mean "label"\?\)/),
      lockTables: expect.stringMatching(/^Unknown lockTables\(\) option "timeoutMS" \(did you mean "timeoutMs"\?\)/),
      withTableLock: expect.stringMatching(/^Unknown withTableLock\(\) option "nowiat" \(did you mean "nowait"\?\)/),
      // acquire() does not renew: only run() does.
      'lease acquire': expect.stringMatching(/^Unknown LeaseService\.acquire\(\) option "renewEveryMs": the options are "atMostForMs", "atLeastForMs"\.$/),
      'lease run': expect.stringMatching(/^Unknown LeaseService\.run\(\) option "renewEvery" \(did you mean "renewEveryMs"\?\)/),
      'single flight': expect.stringMatching(/^Unknown SingleFlightService\.run\(\) option "timeout"/),
      increment: expect.stringMatching(/^Unknown CounterService\.increment\(\) option "shard" \(did you mean "shards"\?\)/),
      decrement: expect.stringMatching(/^Unknown CounterService\.decrement\(\) option "windowMS" \(did you mean "windowMs"\?\)/),
      tryIncrement: expect.stringMatching(/^Unknown CounterService\.tryIncrement\(\) option "maxx" \(did you mean "max"\?\)/),
      tryDecrement: expect.stringMatching(/^Unknown CounterService\.tryDecrement\(\) option "bigInt" \(did you mean "bigint"\?\)/),
      get: expect.stringMatching(/^Unknown CounterService\.get\(\) option "bigInt" \(did you mean "bigint"\?\)/),
      getMany: expect.stringMatching(/^Unknown CounterService\.getMany\(\) option "bigInt" \(did you mean "bigint"\?\)/),
      incrementColumn: expect.stringMatching(/^Unknown CounterService\.incrementColumn\(\) option "minn" \(did you mean "min"\?\)/),
      getOrCreate: expect.stringMatching(/^Unknown AtomicService\.getOrCreate\(\) option "lokc" \(did you mean "lock"\?\)/),
      bulkGetOrCreate: expect.stringMatching(/^Unknown AtomicService\.bulkGetOrCreate\(\) option "conflictColumn" \(did you mean "conflictColumns"\?\)/),
    });
    expect(ran).toBe(0);
    const written = await testApp.dataSource.query(
      `SELECT (SELECT count(*) FROM txlock_counters)::int AS counters, (SELECT count(*) FROM txlock_leases)::int AS leases, (SELECT count(*) FROM unknown_options_item)::int AS items`,
    );
    expect(written).toEqual([{ counters: 0, leases: 0, items: 0 }]);
  });

  it("@Transactional(): a key added to the decorator's options object after decoration is refused on the next call", async () => {
    const jobs = testApp.get(Jobs);
    await jobs.report();
    options.retrys = 3;
    try {
      expect(await refusal(() => jobs.report())).toMatch(/^Unknown @Transactional\(\) option "retrys" \(did you mean "retries"\?\)/);
    } finally {
      delete options.retrys;
    }
    await jobs.report();
    expect(jobs.ran).toBe(2);
  });
});
