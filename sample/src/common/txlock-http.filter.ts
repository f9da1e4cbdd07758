import { Catch, HttpStatus, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import {
  GetOrCreateSerializationError,
  InvalidCounterKeyError,
  LockNotAcquiredError,
  LockTimeoutError,
  PoolExhaustedError,
  SerializationRetriesExhaustedError,
  ShutdownRollbackError,
  ShuttingDownError,
  TransactionTimeoutError,
  TxLockError,
  TxLockExceptionFilter,
} from 'nestjs-txlock';

// The library throws plain errors (it also runs in cron jobs and scripts); their HTTP meaning is the app's.
const STATUS_BY_ERROR: ReadonlyArray<[abstract new (...args: never[]) => TxLockError, HttpStatus]> = [
  // Counter keys are built from request input here (user ids): a key the library refuses is a bad request.
  [InvalidCounterKeyError, HttpStatus.BAD_REQUEST],
  // Concurrent requests kept conflicting: the client may retry the request.
  [SerializationRetriesExhaustedError, HttpStatus.CONFLICT],
  [GetOrCreateSerializationError, HttpStatus.CONFLICT],
  // The server is saturated, not the request wrong.
  [PoolExhaustedError, HttpStatus.SERVICE_UNAVAILABLE],
  [TransactionTimeoutError, HttpStatus.SERVICE_UNAVAILABLE],
];

/**
 * Turns every nestjs-txlock error into an HTTP status with a JSON body `{ statusCode, error, message }`.
 * Lock waits that fail, and work refused or rolled back while the replica shuts down, go to the library's own
 * TxLockExceptionFilter (423 Locked; 503 with Retry-After while shutting down), which `@AdvisoryLock`
 * only applies to controller handlers: here the locks sit on service methods. Anything not listed is a
 * 500 (a bug or a misconfiguration), logged.
 */
@Catch(TxLockError)
export class TxLockHttpFilter implements ExceptionFilter<TxLockError> {
  private readonly logger = new Logger(TxLockHttpFilter.name);
  private readonly locked: TxLockExceptionFilter;

  constructor(private readonly adapterHost: HttpAdapterHost) {
    this.locked = new TxLockExceptionFilter(adapterHost);
  }

  catch(error: TxLockError, host: ArgumentsHost): unknown {
    if (error instanceof LockTimeoutError || error instanceof LockNotAcquiredError || error instanceof ShuttingDownError || error instanceof ShutdownRollbackError) {
      return this.locked.catch(error, host);
    }
    const status = STATUS_BY_ERROR.find(([type]) => error instanceof type)?.[1] ?? HttpStatus.INTERNAL_SERVER_ERROR;
    if (status === HttpStatus.INTERNAL_SERVER_ERROR) this.logger.error(error.stack ?? error.message);
    const body = { statusCode: status, error: error.name, message: error.message };
    this.adapterHost.httpAdapter.reply(host.switchToHttp().getResponse(), body, status);
    return undefined;
  }
}
