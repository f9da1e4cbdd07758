import type { Type } from '@nestjs/common';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import { PARAMTYPES_METADATA, PROPERTY_DEPS_METADATA, SELF_DECLARED_DEPS_METADATA } from '@nestjs/common/constants.js';
import type { DiscoveryService } from '@nestjs/core';

/**
 * Every token the app's own providers and controllers are injected with: constructor parameters (by type or @Inject)
 * and properties (@Inject, which is how the library's decorators reach their services). `isLibrary` leaves out the
 * library's own classes, which inject one another.
 */
export function tokensTheAppInjects(discovery: DiscoveryService, isLibrary: (wrapper: InstanceWrapper) => boolean): Set<unknown> {
  const tokens = new Set<unknown>();
  for (const wrapper of [...discovery.getProviders(), ...discovery.getControllers()]) {
    const type = wrapper.metatype as Type | undefined;
    if (typeof type !== 'function' || isLibrary(wrapper)) continue;
    for (const param of (Reflect.getMetadata(PARAMTYPES_METADATA, type) ?? []) as unknown[]) tokens.add(param);
    for (const { param } of (Reflect.getMetadata(SELF_DECLARED_DEPS_METADATA, type) ?? []) as { param: unknown }[]) tokens.add(param);
    for (const { type: token } of (Reflect.getMetadata(PROPERTY_DEPS_METADATA, type) ?? []) as { type: unknown }[]) tokens.add(token);
  }
  return tokens;
}
