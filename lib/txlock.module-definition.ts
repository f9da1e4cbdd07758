import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { TxLockModuleOptions } from './txlock-options.interface.js';

/**
 * `ConfigurableTxLockModule` is the base of TxLockModule (forRoot/forRootAsync); `TXLOCK_MODULE_OPTIONS` is the
 * injection token of the resolved TxLockModuleOptions, public so tests and extensions can read or override them.
 */
export const {
  ConfigurableModuleClass: ConfigurableTxLockModule,
  MODULE_OPTIONS_TOKEN: TXLOCK_MODULE_OPTIONS,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<TxLockModuleOptions>({ moduleName: 'TxLock' })
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();

/**
 * The name of the DataSource a TxLockModule registration serves (`'default'` unless `forRoot({ dataSource:
 * '<name>' })` or `forRootAsync({ dataSource: '<name>' })` names another); it names that registration's tokens.
 * @internal
 */
export const TXLOCK_DATA_SOURCE_NAME = Symbol('nestjs-txlock:data-source-name');
