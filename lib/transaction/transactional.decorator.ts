import { allowedKeys } from '../common/option-keys.js';
import { injectInto, validateDataSourceName, wrapMethod } from '../common/wrap-method.js';
import { TransactionHost } from './transaction.host.js';
import { readTransactionOptions, TRANSACTION_OPTION_KEYS, type TransactionOptions } from './transaction.options.js';
import type { TransactionSettings } from './transaction-settings.js';

/** Options of `@Transactional()`: the transaction's, and which DataSource it runs on. */
export interface TransactionalOptions extends Omit<TransactionOptions, 'settings'> {
  /** The name of the DataSource (its TxLockModule registration) the transaction runs on. Default: the default one. */
  dataSource?: string;
  /**
   * The transaction's custom settings (TransactionOptions.settings): constant, or a function of the method's own
   * arguments, called on each call: `(tenantId: string) => ({ 'app.tenant_id': tenantId })`.
   */
  // A settings function receives the method's own arguments, whose types the decorator cannot know.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  settings?: TransactionSettings | ((...args: any[]) => TransactionSettings | undefined);
}

const TRANSACTIONAL_KEYS = allowedKeys<TransactionalOptions>('@Transactional()', { ...TRANSACTION_OPTION_KEYS, dataSource: true });

/**
 * Runs the method in a transaction (see TransactionOptions for propagation, isolation, readOnly,
 * timeoutMs, retries). Works on controller handlers and on any provider method (cron jobs, queue
 * consumers, scripts). The method then always returns a Promise; a returned Observable or stream keeps
 * the transaction open until it completes. Invalid options throw when the decorator is applied.
 *
 * `dataSource` picks the DataSource (the name of its TxLockModule registration); a transaction on one
 * DataSource never captures statements of another.
 *
 * @example
 * @Transactional({ isolation: 'SERIALIZABLE', retries: 3 })
 * async transfer(from: number, to: number, amount: number) { ... }
 *
 * @Transactional({ dataSource: 'analytics' })
 * async record(event: Event) { ... }
 *
 * @Transactional({ settings: (tenantId: string) => ({ 'app.tenant_id': tenantId }) })
 * async notesOf(tenantId: string) { ... }
 */
export function Transactional(options: TransactionalOptions = {}): MethodDecorator {
  const constant = (settings: TransactionalOptions['settings']) => (typeof settings === 'function' ? undefined : settings);
  readTransactionOptions({ ...options, settings: constant(options.settings) }, '@Transactional()', TRANSACTIONAL_KEYS); // fails now; each call checks again (options may change)
  const dataSource = validateDataSourceName(options.dataSource, '@Transactional()');
  return (target, key, descriptor) => {
    const host = injectInto(target, TransactionHost, 'Transactional', dataSource);
    wrapMethod('Transactional', target, key, descriptor, (original, methodName) =>
      function transactional(this: object, ...args: unknown[]) {
        // Named after the method so propagation errors can say which method was called.
        const call = { [methodName]: () => original.apply(this, args) }[methodName]!;
        try {
          // The options as read now (they may have changed), less `dataSource`, which TransactionHost.run() refuses;
          // read once per call: runChecked() does not read them again.
          const { settings } = options;
          const ofCall = typeof settings === 'function' ? (settings.apply(this, args) as TransactionSettings | undefined) : settings;
          return host(this).runChecked(readTransactionOptions({ ...options, settings: ofCall }, '@Transactional()', TRANSACTIONAL_KEYS), call);
        } catch (error) {
          return Promise.reject(error); // always a Promise, even when the instance was not made by Nest
        }
      },
    );
  };
}
