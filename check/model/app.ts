import 'reflect-metadata';
import { pathToFileURL } from 'node:url';
import { Injectable, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import pg from 'pg';
import { DataSource, type Repository } from 'typeorm';
import { ModelGoc, ModelItem } from './entities.js';
import type { DataSourceName, Isolation, Propagation } from './program.js';

/** The library's public API, as the checker uses it (the same shape in the hardened build and in d62e977). */
export type Lib = typeof import('../../lib/index.js');
type TransactionHost = InstanceType<Lib['TransactionHost']>;
type LockService = InstanceType<Lib['LockService']>;
type CounterService = InstanceType<Lib['CounterService']>;
type AtomicService = InstanceType<Lib['AtomicService']>;

/**
 * Loads the library under test: by default the sources of this checkout (compiled with the checker), or with
 * `--lib DIR` the compiled `DIR/dist/index.js` of another tree (build it there first: `npx tsc -p tsconfig.build.json`).
 */
export async function loadLib(dir: string | undefined): Promise<{ lib: Lib; label: string }> {
  if (!dir) return { lib: (await import('../../lib/index.js')) as Lib, label: 'this checkout (lib/)' };
  const entry = `${dir.replace(/\/$/, '')}/dist/index.js`;
  return { lib: (await import(pathToFileURL(entry).href)) as Lib, label: entry };
}

const PROPAGATIONS: Propagation[] = ['REQUIRED', 'REQUIRES_NEW', 'NESTED', 'SUPPORTS', 'NOT_SUPPORTED', 'MANDATORY', 'NEVER'];
const ISOLATIONS: (Isolation | undefined)[] = [undefined, 'READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE'];

/** The name of the `@Transactional()` method for one combination of options. */
export function decoratedName(propagation: Propagation | undefined, isolation: Isolation | undefined, readOnly: boolean | undefined, ds: DataSourceName): string {
  return `${ds}_${propagation ?? 'default'}_${(isolation ?? 'default').replace(' ', '_')}_${readOnly ? 'ro' : 'rw'}`;
}

/** True when the build serves several DataSources (TxLockModule.forRoot({ dataSource: name }), getTxLockToken()). */
export function supportsSeveralDataSources(lib: Lib): boolean {
  return typeof (lib as { getTxLockToken?: unknown }).getTxLockToken === 'function';
}

/**
 * A provider with one `@Transactional(options)` method per combination of options (and DataSource), each running
 * the function it is given: the decorator is applied the way a user's class gets it, once per method.
 */
function decoratedTransactions(lib: Lib, dataSources: readonly DataSourceName[]): new () => Record<string, (fn: () => Promise<unknown>) => Promise<unknown>> {
  class DecoratedTransactions {}
  for (const ds of dataSources) {
    for (const propagation of [undefined, ...PROPAGATIONS]) {
      for (const isolation of ISOLATIONS) {
        for (const readOnly of [undefined, true]) {
          const name = decoratedName(propagation, isolation, readOnly, ds);
          const descriptor: PropertyDescriptor = {
            value: function run(fn: () => Promise<unknown>) {
              return fn();
            },
            writable: true,
            configurable: true,
          };
          const options = { propagation, isolation, readOnly, ...(ds === 'main' ? {} : { dataSource: ds }) };
          lib.Transactional(options)(DecoratedTransactions.prototype, name, descriptor);
          Object.defineProperty(DecoratedTransactions.prototype, name, descriptor);
        }
      }
    }
  }
  Injectable()(DecoratedTransactions);
  return DecoratedTransactions as unknown as new () => Record<string, (fn: () => Promise<unknown>) => Promise<unknown>>;
}

/** What the runner needs of one DataSource's registration. */
export interface DataSourceUnderTest {
  dataSource: DataSource;
  host: TransactionHost;
  locks: LockService;
  counters: CounterService;
  atomic: AtomicService;
  items: Repository<ModelItem>;
  decorated: Record<string, (fn: () => Promise<unknown>) => Promise<unknown>>;
  pool: pg.Pool;
}

/** The Nest app under test, built once per database and reused by every program. */
export interface AppUnderTest {
  lib: Lib;
  app: INestApplication;
  dataSources: Partial<Record<DataSourceName, DataSourceUnderTest>>;
  close(): Promise<void>;
}

/** With MODEL_DEBUG set: every statement the app sends, with its backend pid (printed on a divergence). */
export const debugLog: string[] = [];
type DebugRunner = { databaseConnection?: { processID?: number } };
const debugLogger = {
  logQuery: (query: string, _parameters?: unknown[], runner?: DebugRunner) =>
    debugLog.push(`${runner?.databaseConnection?.processID ?? '-'}: ${query.replace(/\s+/g, ' ').slice(0, 120)}`),
  logQueryError: (error: unknown, query: string, _parameters?: unknown[], runner?: DebugRunner) =>
    debugLog.push(`${runner?.databaseConnection?.processID ?? '-'}: ERROR ${String(error).slice(0, 80)} in ${query.slice(0, 60)}`),
  logQuerySlow: () => undefined,
  logSchemaBuild: () => undefined,
  logMigration: () => undefined,
  log: () => undefined,
};

/** Pool size of each DataSource: the generator keeps the connections a program holds at once below it. */
export const POOL_SIZE = 12;

/**
 * Builds the app the way users do: TypeOrmModule.forRoot + TxLockModule.forRoot + forFeature for the default
 * DataSource on `urls.main`, and, when given, the same for the DataSource named `analytics` on `urls.analytics`.
 */
export async function createAppUnderTest(
  lib: Lib,
  urls: Partial<Record<DataSourceName, string>>,
  /** More TxLockModule options (the testing kit's oracle builds a `joinDataSource: false` variant). */
  moduleOptions: Record<string, unknown> = {},
): Promise<AppUnderTest> {
  const names = (Object.keys(urls) as DataSourceName[]).filter((name) => urls[name] !== undefined);
  const Decorated = decoratedTransactions(lib, names);
  const entities = [ModelItem, ModelGoc];
  const typeorm = (name: DataSourceName) => ({
    ...(name === 'main' ? {} : { name }),
    type: 'postgres' as const,
    url: urls[name],
    entities,
    synchronize: true,
    extra: { max: POOL_SIZE },
    ...(process.env.MODEL_DEBUG ? { logging: true as const, logger: debugLogger as never } : {}),
  });
  const txlock = (name: DataSourceName) => ({ counters: { autoCreate: true }, acquireTimeoutMs: 20_000, ...moduleOptions, ...(name === 'main' ? {} : { dataSource: name }) });
  const moduleRef = await Test.createTestingModule({
    imports: names.flatMap((name) => [
      TypeOrmModule.forRoot(typeorm(name)),
      lib.TxLockModule.forRoot(txlock(name) as Parameters<Lib['TxLockModule']['forRoot']>[0]),
      name === 'main' ? lib.TxLockModule.forFeature(entities) : (lib.TxLockModule.forFeature as (e: unknown[], ds: string) => ReturnType<Lib['TxLockModule']['forFeature']>)(entities, name),
    ]),
    providers: [Decorated],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: ['error'] });
  await app.init();
  const decorated = app.get(Decorated);
  const token = <T>(service: abstract new (...args: never[]) => T, name: DataSourceName): T =>
    app.get(name === 'main' ? service : (lib as unknown as { getTxLockToken(s: unknown, n: string): string }).getTxLockToken(service, name)) as T;
  const dataSources: Partial<Record<DataSourceName, DataSourceUnderTest>> = {};
  for (const name of names) {
    const dataSource = app.get(name === 'main' ? DataSource : getDataSourceToken(name)) as DataSource;
    dataSources[name] = {
      dataSource,
      host: token(lib.TransactionHost, name),
      locks: token(lib.LockService, name),
      counters: token(lib.CounterService, name),
      atomic: token(lib.AtomicService, name),
      items: app.get((lib.getTxRepositoryToken as (entity: unknown, ds?: string) => string)(ModelItem, name === 'main' ? undefined : name)),
      decorated,
      pool: (dataSource.driver as unknown as { master: pg.Pool }).master,
    };
  }
  return { lib, app, dataSources, close: () => app.close() };
}
