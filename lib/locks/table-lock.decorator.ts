import { UseFilters } from '@nestjs/common';
import { allowedKeys, checkOptionKeys } from '../common/option-keys.js';
import { injectInto, validateDataSourceName, wrapMethod } from '../common/wrap-method.js';
import { TxLockExceptionFilter } from './lock-exception.filter.js';
import { TABLE_LOCK_KEYS, type TableLockMode, type TableLockOptions } from './lock.options.js';
import { LockService } from './lock.service.js';
import { validateTableLock, type TableTarget } from './table-targets.js';

/** Options of `@TableLock()`. */
export interface TableLockDecoratorOptions extends TableLockOptions {
  /** The name of the DataSource (its TxLockModule registration) whose tables to lock. Default: the default one. */
  dataSource?: string;
}

const DECORATOR_KEYS = allowedKeys<TableLockDecoratorOptions>('@TableLock()', { ...TABLE_LOCK_KEYS, dataSource: true });

/**
 * Runs the method in a transaction (opened, or joined as `options.propagation` says) that first takes
 * `LOCK TABLE <targets> IN <mode> MODE`, held until the transaction ends. `mode` is one of the eight
 * PostgreSQL modes (TableLockMode); `targets` are entity classes (their schema-qualified table from TypeORM
 * metadata) or table names; every identifier is quoted. A bad mode, table name or option throws when the
 * decorator is applied. With `nowait`/`timeoutMs`, a busy table throws LockNotAcquiredError/LockTimeoutError
 * (HTTP 423 on a controller).
 *
 * @example
 * // Get-or-create on a table without a unique constraint: writers queue, readers are not blocked.
 * @TableLock('SHARE ROW EXCLUSIVE', [Session], { timeoutMs: 5_000 })
 * async sessionFor(userId: number) { ... }
 */
export function TableLock(mode: TableLockMode, targets: TableTarget | readonly TableTarget[], options: TableLockDecoratorOptions = {}): MethodDecorator {
  checkOptionKeys(options, DECORATOR_KEYS);
  const { dataSource: name, ...lockOptions } = options;
  const list = validateTableLock(mode, targets, lockOptions, '@TableLock()');
  const dataSource = validateDataSourceName(name, '@TableLock()');
  return (target, propertyKey, descriptor) => {
    const locks = injectInto(target, LockService, 'TableLock', dataSource);
    wrapMethod('TableLock', target, propertyKey, descriptor, (original) =>
      async function tableLock(this: object, ...args: unknown[]) {
        return locks(this).withTableLock(list, mode, () => original.apply(this, args), lockOptions);
      },
    );
    UseFilters(TxLockExceptionFilter)(target, propertyKey, descriptor);
  };
}
