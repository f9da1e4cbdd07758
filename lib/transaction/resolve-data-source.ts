import type { ModuleRef } from '@nestjs/core';
import { DataSource } from 'typeorm';
import { TxLockConfigurationError, UnsupportedDriverError } from '../errors.js';

/** The name @nestjs/typeorm gives a DataSource registered without one. */
export const DEFAULT_DATA_SOURCE_NAME = 'default';

/**
 * The injection token @nestjs/typeorm registers a DataSource under (its `getDataSourceToken(name)`): the
 * DataSource class for the default one, `<name>DataSource` for a named one.
 */
export function dataSourceToken(name: string): typeof DataSource | string {
  return name === DEFAULT_DATA_SOURCE_NAME ? DataSource : `${name}DataSource`;
}

/**
 * The PostgreSQL DataSource a TxLockModule registration works on: `given` itself, the DataSource registered
 * under the name `given`, or (nothing given) the one named `name`. Fails with a message that says how to
 * register or pass it when it is missing, not a DataSource, not PostgreSQL, or not initialised.
 */
export function resolveDataSource(moduleRef: ModuleRef, given: unknown, name: string): DataSource {
  if (given !== undefined && typeof given !== 'string' && !(given instanceof DataSource)) {
    throw new TxLockConfigurationError(
      `TxLockModule option "dataSource" must be a TypeORM DataSource or the name of one registered with TypeOrmModule.forRoot({ name }), ` +
        `but it is ${given === null ? 'null' : typeof given === 'object' ? `an object with keys ${Object.keys(given).join(', ') || '(none)'}` : typeof given}.`,
    );
  }
  const dataSource = given instanceof DataSource ? given : lookUp(moduleRef, typeof given === 'string' ? given : name);
  if (dataSource.options.type !== 'postgres') throw new UnsupportedDriverError(dataSource.options.type);
  if (!dataSource.isInitialized) {
    throw new TxLockConfigurationError('The DataSource given to TxLockModule is not initialized: call dataSource.initialize() first.');
  }
  return dataSource;
}

function lookUp(moduleRef: ModuleRef, name: string): DataSource {
  const token = dataSourceToken(name);
  let found: unknown;
  try {
    found = moduleRef.get(token, { strict: false });
  } catch {
    found = undefined;
  }
  if (found instanceof DataSource) return found;
  const tokenText = typeof token === 'string' ? `'${token}'` : 'DataSource';
  const named = name === DEFAULT_DATA_SOURCE_NAME ? '' : ` named '${name}'`;
  throw new TxLockConfigurationError(
    `TxLockModule found no TypeORM DataSource${named} (injection token ${tokenText}). Register it with ` +
      `TypeOrmModule.forRoot({ ${name === DEFAULT_DATA_SOURCE_NAME ? '' : `name: '${name}', `}type: 'postgres', ... }) from @nestjs/typeorm, ` +
      `or pass it: TxLockModule.forRootAsync({ inject: [getDataSourceToken(${name === DEFAULT_DATA_SOURCE_NAME ? '' : `'${name}'`})], ` +
      `useFactory: (dataSource: DataSource) => ({ dataSource }) }). If your TypeOrmModule.forRoot() has a name, give ` +
      `TxLockModule that name: TxLockModule.forRoot({ dataSource: '<name>' }).`,
  );
}
