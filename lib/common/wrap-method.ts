import { Inject } from '@nestjs/common';
import { InvalidOptionError, TxLockConfigurationError } from '../errors.js';
import { getTxLockToken } from '../txlock-tokens.js';

type AnyMethod = (this: object, ...args: unknown[]) => unknown;

// Properties every function has of its own; the wrapper keeps its own (name is set to the original's below).
const FUNCTION_OWN = new Set<string | symbol>(['length', 'name', 'prototype', 'arguments', 'caller']);

/**
 * Replaces a decorated method with `wrap(original)`, keeping everything Nest and other decorators put on
 * the original: its Reflect metadata (route, @Cron, @MessagePattern...) and the properties an earlier
 * decorator set on the function itself (string and symbol keys, as defined), so decorators can be stacked in
 * any order. Throws at decoration time when the target is not a method.
 */
export function wrapMethod(
  decorator: string,
  target: object,
  key: string | symbol,
  descriptor: PropertyDescriptor,
  wrap: (original: AnyMethod, methodName: string) => AnyMethod,
): void {
  const original = descriptor.value as unknown;
  if (typeof original !== 'function') {
    throw new TxLockConfigurationError(`@${decorator}() can only decorate methods, but ${String(key)} is not one.`);
  }
  const methodName = `${target.constructor.name}.${String(key)}`;
  const wrapper = wrap(original as AnyMethod, methodName);
  for (const metadataKey of Reflect.getOwnMetadataKeys(original)) {
    Reflect.defineMetadata(metadataKey, Reflect.getOwnMetadata(metadataKey, original), wrapper);
  }
  for (const property of Reflect.ownKeys(original)) {
    if (!FUNCTION_OWN.has(property)) Object.defineProperty(wrapper, property, Object.getOwnPropertyDescriptor(original, property)!);
  }
  Object.defineProperty(wrapper, 'name', { value: original.name });
  descriptor.value = wrapper;
}

/**
 * Makes Nest inject `service` (of the TxLockModule registration of the DataSource `dataSource`, default the
 * default one) into a hidden property of every instance of the decorated class, so a method decorator can reach
 * it without a global registry. Returns the getter the wrapper uses.
 */
export function injectInto<T>(target: object, service: abstract new (...args: never[]) => T, decorator: string, dataSource?: string): (instance: object) => T {
  const token = getTxLockToken(service, dataSource);
  // Nest names this property when the service cannot be injected (TxLockModule not imported): it says the fix.
  const registration = dataSource ? `TxLockModule.forRoot({ dataSource: '${dataSource}' })` : 'TxLockModule.forRoot() or forRootAsync()';
  const property = Symbol.for(`nestjs-txlock needs ${service.name}: import ${registration} in the app`);
  Inject(token)(target, property);
  return (instance) => {
    const injected = (instance as Record<symbol, T | undefined>)[property];
    if (!injected) {
      throw new TxLockConfigurationError(
        `@${decorator}() on ${instance.constructor.name} needs ${typeof token === 'string' ? token : service.name}, which Nest injects: make ` +
          `the class a provider or controller of an app that imports TxLockModule${dataSource ? `.forRoot({ dataSource: '${dataSource}' })` : ''}, and create it through Nest (not with "new").`,
      );
    }
    return injected;
  };
}

/** The DataSource name a decorator was given, checked when it is applied: undefined or a non-empty string. */
export function validateDataSourceName(dataSource: unknown, decorator: string): string | undefined {
  if (dataSource !== undefined && (typeof dataSource !== 'string' || dataSource.length === 0)) {
    throw new InvalidOptionError(`${decorator} "dataSource"`, dataSource, 'the name of a DataSource registered with TxLockModule.forRoot({ dataSource })');
  }
  return dataSource;
}
