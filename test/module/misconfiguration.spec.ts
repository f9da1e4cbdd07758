import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type DynamicModule } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { InvalidOptionError, Transactional, TxLockConfigurationError, TxLockModule, type TxLockModuleOptions } from '../../lib/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

@Injectable()
class Bank {
  @Transactional()
  async transfer(): Promise<void> {}
}

// Each way of setting the module up wrongly fails at bootstrap with an error that says the fix.
describe('TxLockModule set up wrongly', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  const bootstrap = async (imports: DynamicModule[], providers: unknown[] = []): Promise<unknown> => {
    try {
      const moduleRef = await Test.createTestingModule({ imports, providers: providers as never[] }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      try {
        await app.init();
      } finally {
        await app.close();
      }
      return undefined;
    } catch (error) {
      return error;
    }
  };
  const typeorm = (name?: string) => TypeOrmModule.forRoot({ name, type: 'postgres', url: db.url, extra: { max: 2 } });
  // forRoot() refuses bad options itself, before any provider (TypeORM's DataSource included) exists.
  const withOptions = async (options: unknown) => {
    try {
      return await bootstrap([typeorm(), TxLockModule.forRoot(options as TxLockModuleOptions)]);
    } catch (error) {
      return error;
    }
  };

  it('a decorated class in an app without TxLockModule: the error names TxLockModule.forRoot() / forRootAsync()', async () => {
    const error = await bootstrap([typeorm()], [Bank]);
    expect(String((error as Error).message)).toMatch(/TxLockModule\.forRoot\(\) or forRootAsync\(\)/);
  });

  it('unknown option keys are refused, listing the valid keys and the closest one', async () => {
    const retrys = await withOptions({ retrys: 3 });
    expect(retrys).toBeInstanceOf(InvalidOptionError);
    expect((retrys as Error).message).toMatch(/Unknown TxLockModule option "retrys" \(did you mean "retries"\?\)/);
    expect((retrys as Error).message).toMatch(/"isolation", "timeoutMs", "retries"/);

    const nested = await withOptions({ counters: { tabel: 'c' } });
    expect((nested as Error).message).toMatch(/"counters\.tabel" \(did you mean "counters\.table"\?\).*"table", "autoCreate", "coalesce"/);

    const misplaced = await withOptions({ table: 'txlock_counters' });
    expect(misplaced).toBeInstanceOf(InvalidOptionError);

    expect(() => TxLockModule.forRoot({ retrys: 3 } as TxLockModuleOptions)).toThrow(InvalidOptionError);
    expect(() => TxLockModule.forRoot({ isolation: 'SNAPSHOT' } as never)).toThrow(/READ COMMITTED/);
  });

  it('a value outside its set is refused, naming the valid values', async () => {
    const store = await withOptions({ singleFlight: { store: 'redis' } });
    expect(store).toBeInstanceOf(InvalidOptionError);
    expect((store as Error).message).toMatch(/"postgres", "cache-manager"/);
    expect(await withOptions({ joinDataSource: 'yes' })).toBeInstanceOf(InvalidOptionError);
  });

  it('a dataSource that is neither a DataSource nor a name is refused with a TxLockConfigurationError, not a TypeError', async () => {
    const error = await withOptions({ dataSource: { foo: 1 } });
    expect(error).toBeInstanceOf(TxLockConfigurationError);
    expect((error as Error).message).toMatch(/must be a TypeORM DataSource or the name of one/);
  });

  it('with only a named DataSource, the error suggests registering by that name and getDataSourceToken, not inject: [DataSource]', async () => {
    const error = await bootstrap([typeorm('reports'), TxLockModule.forRoot()]);
    expect(error).toBeInstanceOf(TxLockConfigurationError);
    expect((error as Error).message).toMatch(/TxLockModule\.forRoot\(\{ dataSource: '<name>' \}\)/);
    expect((error as Error).message).toMatch(/getDataSourceToken\(\)/);
    expect(await bootstrap([typeorm('reports'), TxLockModule.forRoot({ dataSource: 'reports' })])).toBeUndefined();
  });
});
