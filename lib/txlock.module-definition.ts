import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { TxLockModuleOptions } from './txlock-options.interface.js';

export const {
  ConfigurableModuleClass: ConfigurableTxLockModule,
  MODULE_OPTIONS_TOKEN: TXLOCK_MODULE_OPTIONS,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<TxLockModuleOptions>({ moduleName: 'TxLock' })
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();
