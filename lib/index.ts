export * from './errors.js';
export { TxLockModule } from './txlock.module.js';
export { TXLOCK_MODULE_OPTIONS } from './txlock.module-definition.js';
export type { TxLockModuleOptions } from './txlock-options.interface.js';
export { TransactionHost } from './transaction/transaction.host.js';
export type { TransactionHook } from './transaction/transaction-scope.js';
export { Transactional } from './transaction/transactional.decorator.js';
export { InjectTxRepository, getTxRepositoryToken } from './transaction/tx-repository.js';
export { IsolationLevel, Propagation, type TransactionOptions } from './transaction/transaction.options.js';
