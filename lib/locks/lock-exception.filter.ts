import { Catch, HttpStatus, Optional, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { throwError } from 'rxjs';
import { LockNotAcquiredError, LockTimeoutError } from '../errors.js';

/** The JSON body TxLockExceptionFilter answers with. It never names the lock: keys are internal. */
export interface LockedResponseBody {
  statusCode: number;
  error: string;
  message: string;
  /** `timeout`: waited timeoutMs in vain; `locked`: nowait found it taken. */
  reason: 'timeout' | 'locked';
}

/**
 * Answers HTTP 423 Locked (RFC 4918) when a handler fails with LockTimeoutError or LockNotAcquiredError:
 * the resource is busy with another request, and the same request may succeed later. (409 Conflict would say
 * the request clashes with the resource's state, which retrying does not fix.) `@AdvisoryLock()` and
 * `@TableLock()` apply it to the handlers they decorate; register it app-wide to cover LockService calls too.
 * Other contexts get the error back unchanged. Subclass and override `status()`/`body()` to change the answer.
 *
 * @example
 * providers: [{ provide: APP_FILTER, useClass: TxLockExceptionFilter }]
 */
@Catch(LockTimeoutError, LockNotAcquiredError)
export class TxLockExceptionFilter implements ExceptionFilter {
  constructor(@Optional() private readonly adapterHost?: HttpAdapterHost) {}

  catch(error: LockTimeoutError | LockNotAcquiredError, host: ArgumentsHost): unknown {
    const adapter = this.adapterHost?.httpAdapter;
    if (host.getType() === 'rpc') return throwError(() => error);
    if (host.getType() !== 'http' || !adapter) return error;
    adapter.reply(host.switchToHttp().getResponse(), this.body(error), this.status(error));
    return undefined;
  }

  /** The HTTP status: 423 Locked. */
  protected status(_error: LockTimeoutError | LockNotAcquiredError): number {
    return HttpStatus.LOCKED;
  }

  /** The response body. */
  protected body(error: LockTimeoutError | LockNotAcquiredError): LockedResponseBody {
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
