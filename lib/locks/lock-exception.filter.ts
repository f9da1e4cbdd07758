import { Catch, HttpStatus, Optional, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { throwError } from 'rxjs';
import { LockNotAcquiredError, LockTimeoutError, ShutdownRollbackError, ShuttingDownError } from '../errors.js';

/** The JSON body TxLockExceptionFilter answers with. It never names the lock: keys are internal. */
export interface LockedResponseBody {
  statusCode: number;
  error: string;
  message: string;
  /**
   * `timeout`: waited timeoutMs in vain; `locked`: nowait found it taken; `shutting-down`: this replica is closing
   * (the request's work was refused before it ran, or rolled back), so send it to another one.
   */
  reason: 'timeout' | 'locked' | 'shutting-down';
}

/**
 * Answers HTTP 423 Locked (RFC 4918) when a handler fails with LockTimeoutError or LockNotAcquiredError:
 * the resource is busy with another request, and the same request may succeed later. (409 Conflict would say
 * the request clashes with the resource's state, which retrying does not fix.) Answers 503 Service Unavailable with
 * `Retry-After` when the app is closing (ShuttingDownError: the work was refused before it ran; ShutdownRollbackError:
 * it was rolled back after the shutdown grace period), so that clients and load balancers retry on another replica.
 * `@AdvisoryLock()` and `@TableLock()` apply it to the handlers they decorate; register it app-wide to cover
 * LockService calls and transactions too. Other contexts get the error back unchanged. Subclass and override
 * `status()`/`body()`/`retryAfterSeconds()` to change the answer.
 *
 * @example
 * providers: [{ provide: APP_FILTER, useClass: TxLockExceptionFilter }]
 */
@Catch(LockTimeoutError, LockNotAcquiredError, ShuttingDownError, ShutdownRollbackError)
export class TxLockExceptionFilter implements ExceptionFilter {
  constructor(@Optional() private readonly adapterHost?: HttpAdapterHost) {}

  catch(error: LockTimeoutError | LockNotAcquiredError | ShuttingDownError | ShutdownRollbackError, host: ArgumentsHost): unknown {
    const adapter = this.adapterHost?.httpAdapter;
    if (host.getType() === 'rpc') return throwError(() => error);
    if (host.getType() !== 'http' || !adapter) return error;
    const response: unknown = host.switchToHttp().getResponse();
    const retryAfter = this.retryAfterSeconds(error);
    if (retryAfter !== undefined) adapter.setHeader(response, 'Retry-After', String(retryAfter));
    adapter.reply(response, this.body(error), this.status(error));
    return undefined;
  }

  /** The HTTP status: 423 Locked, or 503 Service Unavailable while the app shuts down. */
  protected status(error: LockTimeoutError | LockNotAcquiredError | ShuttingDownError | ShutdownRollbackError): number {
    return isShutdown(error) ? HttpStatus.SERVICE_UNAVAILABLE : HttpStatus.LOCKED;
  }

  /**
   * The `Retry-After` header, in seconds, or undefined for none: 1 while the app shuts down (another replica can take
   * the request now; the client should not wait for this one), none for a busy lock.
   */
  protected retryAfterSeconds(error: LockTimeoutError | LockNotAcquiredError | ShuttingDownError | ShutdownRollbackError): number | undefined {
    return isShutdown(error) ? 1 : undefined;
  }

  /** The response body. */
  protected body(error: LockTimeoutError | LockNotAcquiredError | ShuttingDownError | ShutdownRollbackError): LockedResponseBody {
    if (isShutdown(error)) {
      return {
        statusCode: this.status(error),
        error: 'Service Unavailable',
        message:
          error instanceof ShuttingDownError
            ? 'This server is shutting down and did not start the request. Retry it.'
            : 'This server shut down while handling the request; nothing of it was committed. Retry it.',
        reason: 'shutting-down',
      };
    }
    const timeout = error instanceof LockTimeoutError;
    return {
      statusCode: this.status(error),
      error: 'Locked',
      message: timeout
        ? 'The resource is busy with another request and did not become free in time. Retry later.'
        : 'The resource is busy with another request. Retry later.',
      reason: timeout ? 'timeout' : 'locked',
    };
  }
}

function isShutdown(error: unknown): error is ShuttingDownError | ShutdownRollbackError {
  return error instanceof ShuttingDownError || error instanceof ShutdownRollbackError;
}
