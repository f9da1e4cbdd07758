import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { Observable } from 'rxjs';
import { ClientDisconnectedError } from '../errors.js';
import { TXLOCK_MODULE_OPTIONS } from '../txlock.module-definition.js';
import type { TxLockModuleOptions } from '../txlock-options.interface.js';
import { bindsRequestsToTests, runInCurrentTests } from './transaction-scope.js';
import { processWide } from '../common/process-state.js';
import { requestContext } from './request-context.js';
import { CallContextSlot } from '../common/call-context.js';

/** The abort signal of the HTTP request being handled, if any: aborted when its client goes away. */
export const requestAbortSignal = new CallContextSlot<AbortSignal>('request-abort-signal');
// The HTTP requests being handled, by their abort signal, with when each began (performance.now()), and who wants to
// know when one ends: the app's shutdown lets the requests that arrived before it began finish (ShutdownGate).
const inFlight = processWide('requests-in-flight', () => ({ started: new Map<AbortSignal, number>(), ended: new Set<() => void>() }));

/** When the HTTP request being handled began (performance.now()), if the caller handles one. */
export function requestStartedAt(): number | undefined {
  const signal = requestAbortSignal.getStore();
  return signal && inFlight.started.get(signal);
}

/** True while an HTTP request that began before `time` (performance.now()) is still being handled. */
export function requestsStartedBefore(time: number): boolean {
  for (const startedAt of inFlight.started.values()) if (startedAt < time) return true;
  return false;
}

/** Calls `listener` whenever an HTTP request ends, until the returned function is called. */
export function onRequestEnd(listener: () => void): () => void {
  inFlight.ended.add(listener);
  return () => inFlight.ended.delete(listener);
}

/**
 * Registered globally by TxLockModule: when an HTTP client disconnects before its response is sent,
 * the handler's transaction is rolled back instead of committed (nobody is there to learn it succeeded,
 * and a client that retries must not find half of a first attempt). Disable with `rollbackOnDisconnect: false`.
 * With the module option `settings`, it also makes the request known to that function.
 */
@Injectable()
export class ClientDisconnectInterceptor implements NestInterceptor {
  constructor(@Inject(TXLOCK_MODULE_OPTIONS) private readonly options: TxLockModuleOptions) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const handled = this.withRequest(context, () => this.abortOnDisconnect(context, next));
    if (!bindsRequestsToTests()) return handled;
    // Under nestjs-txlock/testing, a request belongs to the tests running when it started, or to none.
    return new Observable((subscriber) => runInCurrentTests(() => handled.subscribe(subscriber)));
  }

  // With the module option `settings`, the handler's call chain knows its request (request-context.ts).
  private withRequest(context: ExecutionContext, handle: () => Observable<unknown>): Observable<unknown> {
    if (this.options.settings === undefined || context.getType() !== 'http') return handle();
    const request: unknown = context.switchToHttp().getRequest();
    return new Observable((subscriber) => requestContext.run({ request }, () => handle().subscribe(subscriber)));
  }

  private abortOnDisconnect(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http' || this.options.rollbackOnDisconnect === false) return next.handle();
    const response = context.switchToHttp().getResponse<ServerResponse>();
    if (typeof response?.once !== 'function') return next.handle();
    return new Observable((subscriber) => {
      const controller = new AbortController();
      inFlight.started.set(controller.signal, performance.now());
      // 'close' on the response fires when the connection ends; before the response finished, that is a disconnect.
      const onClose = () => {
        if (!response.writableFinished) controller.abort(new ClientDisconnectedError());
      };
      response.once('close', onClose);
      // A client that left before the interceptor ran (while a guard or a middleware waited): 'close' has fired already.
      if (response.destroyed) onClose();
      const subscription = requestAbortSignal.run(controller.signal, () => next.handle().subscribe(subscriber));
      return () => {
        response.off('close', onClose);
        subscription.unsubscribe();
        inFlight.started.delete(controller.signal);
        for (const listener of inFlight.ended) listener();
      };
    });
  }
}
