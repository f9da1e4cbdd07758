import { Inject, Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ServerResponse } from 'node:http';
import { Observable } from 'rxjs';
import { ClientDisconnectedError } from '../errors.js';
import { TXLOCK_MODULE_OPTIONS } from '../txlock.module-definition.js';
import type { TxLockModuleOptions } from '../txlock-options.interface.js';
import { runInCurrentTests, underTest } from './transaction-scope.js';
import { processWide } from '../common/process-state.js';
import { requestContext } from './request-context.js';

/** The abort signal of the HTTP request being handled, if any: aborted when its client goes away. */
export const requestAbortSignal = processWide('request-abort-signal', () => new AsyncLocalStorage<AbortSignal>());

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
    if (!underTest()) return handled;
    // Under nestjs-txlock/testing, a request belongs to the test that was running when it started.
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
      // 'close' on the response fires when the connection ends; before the response finished, that is a disconnect.
      const onClose = () => {
        if (!response.writableFinished) controller.abort(new ClientDisconnectedError());
      };
      response.once('close', onClose);
      const subscription = requestAbortSignal.run(controller.signal, () => next.handle().subscribe(subscriber));
      return () => {
        response.off('close', onClose);
        subscription.unsubscribe();
      };
    });
  }
}
