import { Inject, type Provider } from '@nestjs/common';
import { Repository, type EntityTarget, type ObjectLiteral } from 'typeorm';
import { getTxLockToken } from '../txlock-tokens.js';
import { DEFAULT_DATA_SOURCE_NAME } from './resolve-data-source.js';
import { TransactionHost } from './transaction.host.js';

/**
 * The injection token of the transaction-aware repository of `entity` on the DataSource `dataSource` (public so
 * tests can override it).
 */
export function getTxRepositoryToken(entity: EntityTarget<ObjectLiteral>, dataSource: string = DEFAULT_DATA_SOURCE_NAME): string {
  const name =
    typeof entity === 'function' ? entity.name : typeof entity === 'string' ? entity : 'options' in entity ? entity.options.name : entity.name;
  return dataSource === DEFAULT_DATA_SOURCE_NAME ? `TxLockRepository(${name})` : `TxLockRepository(${dataSource}.${name})`;
}

/**
 * Injects a repository of `entity` (on the DataSource `dataSource`, default the default one) that always joins
 * the caller's current transaction, and works as a plain repository outside one. Register the entity with
 * `TxLockModule.forFeature([entity], dataSource?)`. With `joinDataSource` on (the default), `@InjectRepository()`
 * repositories join the transaction as well; this is the explicit way, and the way with `joinDataSource: false`.
 *
 * @example
 * constructor(@InjectTxRepository(Post) private readonly posts: Repository<Post>) {}
 */
export const InjectTxRepository = (entity: EntityTarget<ObjectLiteral>, dataSource?: string): PropertyDecorator & ParameterDecorator =>
  Inject(getTxRepositoryToken(entity, dataSource));

/** Providers of transaction-aware repositories, one per entity, on the DataSource `dataSource`. */
export function createTxRepositoryProviders(entities: EntityTarget<ObjectLiteral>[], dataSource: string): Provider[] {
  return entities.map((entity) => ({
    provide: getTxRepositoryToken(entity, dataSource),
    inject: [getTxLockToken(TransactionHost, dataSource)],
    useFactory: (host: TransactionHost) => transactionAwareRepository(host, entity),
  }));
}

const REPOSITORY_FIELDS = new Set<string | symbol>(['target', 'manager', 'queryRunner']);

// Every property read is forwarded to the repository of the current transaction at the moment of the
// call, so a repository kept in a field still follows each request's transaction. Only Repository's own
// members are forwarded: Nest probes providers for `then`, `onModuleInit`... before the DataSource exists.
function transactionAwareRepository(host: TransactionHost, entity: EntityTarget<ObjectLiteral>): Repository<ObjectLiteral> {
  return new Proxy(Object.create(Repository.prototype) as Repository<ObjectLiteral>, {
    get(_target, property) {
      if (property === 'constructor' || (!(property in Repository.prototype) && !REPOSITORY_FIELDS.has(property))) return undefined;
      const repository = host.getRepository(entity);
      const value = Reflect.get(repository, property, repository);
      return typeof value === 'function' ? value.bind(repository) : value;
    },
  });
}
