import { Inject } from '@nestjs/common';
import { TxLockConfigurationError } from '../errors.js';

type AnyMethod = (this: object, ...args: unknown[]) => unknown;

/**
 * Replaces a decorated method with `wrap(original)`, keeping everything Nest and other decorators put on
 * the original (route, @Cron, @MessagePattern metadata...), so decorators can be stacked in any order.
 * Throws at decoration time when the target is not a method.
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
  Object.defineProperty(wrapper, 'name', { value: original.name });
  descriptor.value = wrapper;
}

/**
 * Makes Nest inject `token` into a hidden property of every instance of the decorated class, so a method
 * decorator can reach a service without a global registry. Returns the getter the wrapper uses.
 */
export function injectInto<T>(target: object, token: abstract new (...args: never[]) => T, decorator: string): (instance: object) => T {
  const property = Symbol.for(`nestjs-txlock:${token.name}`);
  Inject(token)(target, property);
  return (instance) => {
    const service = (instance as Record<symbol, T | undefined>)[property];
    if (!service) {
      throw new TxLockConfigurationError(
        `@${decorator}() on ${instance.constructor.name} needs ${token.name}, which Nest injects: make the class a provider ` +
          `or controller of an app that imports TxLockModule, and create it through Nest (not with "new").`,
      );
    }
    return service;
  };
}
