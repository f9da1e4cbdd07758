import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { TxLockModuleOptions } from './txlock-options.interface.js';

const definition = new ConfigurableModuleBuilder<TxLockModuleOptions>({ moduleName: 'TxLock' })
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (module, extras) => ({ ...module, global: extras.isGlobal }))
  .build();

/** `ConfigurableTxLockModule` is the base of TxLockModule (forRoot/forRootAsync). */
export const { ConfigurableModuleClass: ConfigurableTxLockModule, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } = definition;

/**
 * The injection token of the resolved TxLockModuleOptions, public so tests and extensions can read or override them.
 */
export const TXLOCK_MODULE_OPTIONS = definition.MODULE_OPTIONS_TOKEN;

/**
 * The name of the DataSource a TxLockModule registration serves (`'default'` unless `forRoot({ dataSource:
 * '<name>' })` or `forRootAsync({ dataSource: '<name>' })` names another); it names that registration's tokens.
 * @internal
 */
export const TXLOCK_DATA_SOURCE_NAME = Symbol('nestjs-txlock:data-source-name');
