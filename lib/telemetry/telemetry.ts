import type { Attributes, Counter, Histogram, Meter, Span, Tracer } from '@opentelemetry/api';
import { withoutQuotedValues } from '../common/quoted-values.js';
import { NotAcquired } from '../locks/lock-result.js';

type OpenTelemetryApi = typeof import('@opentelemetry/api');

/** The tracer's and meter's name (the instrumentation scope). */
export const INSTRUMENTATION_NAME = 'nestjs-txlock';
/** On every span: the OpenTelemetry database semantic conventions' system name. */
export const DB_SYSTEM = { 'db.system.name': 'postgresql' } as const;
// Bucket boundaries (seconds) for the duration histograms: the semantic conventions' advice for database calls.
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/**
 * The library's instruments, made once from the providers registered when they were made. Only exists while
 * telemetry is on: the hooks in the library test `telemetry` and do nothing else when it is undefined.
 */
export class Telemetry {
  readonly tracer: Tracer;
  readonly lockWait: Histogram;
  readonly lockHold: Histogram;
  readonly lockTimeouts: Counter;
  readonly retries: Counter;
  readonly retriesExhausted: Counter;
  readonly poolWait: Histogram;
  readonly counterBatch: Histogram;
  readonly leaseTakeovers: Counter;
  readonly leaseLosses: Counter;

  constructor(readonly api: OpenTelemetryApi, meter: Meter) {
    this.tracer = api.trace.getTracer(INSTRUMENTATION_NAME);
    const seconds = (name: string, description: string) =>
      meter.createHistogram(name, { unit: 's', description, advice: { explicitBucketBoundaries: DURATION_BUCKETS } });
    this.lockWait = seconds('txlock.lock.wait.duration', 'Time from a lock request to its grant (or its failure).');
    this.lockHold = seconds('txlock.lock.hold.duration', 'Time from a lock grant to the end of the locked call.');
    this.lockTimeouts = meter.createCounter('txlock.lock.timeouts', { unit: '{lock}', description: 'Locks not acquired: timeoutMs ran out, or nowait found them taken.' });
    this.retries = meter.createCounter('txlock.transaction.retries', { unit: '{retry}', description: 'Transactions retried after a serialization failure or deadlock.' });
    this.retriesExhausted = meter.createCounter('txlock.transaction.retries_exhausted', { unit: '{transaction}', description: 'Transactions that failed after their last retry.' });
    this.poolWait = seconds('txlock.pool.acquire.wait.duration', 'Time spent waiting for a pooled connection.');
    this.counterBatch = meter.createHistogram('txlock.counter.batch.size', {
      unit: '{increment}',
      description: 'Increments sent in one statement by the counter coalescer.',
      advice: { explicitBucketBoundaries: BATCH_BUCKETS },
    });
    this.leaseTakeovers = meter.createCounter('txlock.lease.takeovers', { unit: '{lease}', description: 'Leases acquired from another holder.' });
    this.leaseLosses = meter.createCounter('txlock.lease.losses', { unit: '{lease}', description: 'Renewals that found their lease lost.' });
  }

  /** Starts a span (a child of the active one) with the database system attribute. */
  span(name: string, attributes: Attributes): Span {
    return this.tracer.startSpan(name, { attributes: { ...DB_SYSTEM, ...attributes } });
  }

  /**
   * Runs `run` in a new active span, so the spans it starts are its children. `describe` adds attributes from
   * the result; an error is recorded on the span and rethrown.
   */
  trace<T>(name: string, attributes: Attributes, run: (span: Span) => Promise<T>, describe?: (value: T) => Attributes): Promise<T> {
    return this.tracer.startActiveSpan(name, { attributes: { ...DB_SYSTEM, ...attributes } }, async (span) => {
      try {
        const value = await run(span);
        if (describe) span.setAttributes(describe(value));
        return value;
      } catch (error) {
        this.fail(span, error);
        throw error;
      } finally {
        span.end();
      }
    });
  }

  /**
   * Records `error` on `span` (an `exception` event whose type is the error's class) and sets its status to ERROR
   * with the error's message, less the keys and other caller values the library's errors quote (recordedError()).
   */
  fail(span: Span, error: unknown): void {
    const recorded = recordedError(error);
    span.recordException(recorded);
    span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: recorded.message });
  }
}

/**
 * What a span records of a failure: the class name as the exception's type (not pg's SQLSTATE `code`, which
 * OpenTelemetry would prefer), the message and stack trace without the caller's values the library's errors quote
 * (lock keys, counter keys, lease names, single-flight keys, option values). A lock that was not acquired is
 * recorded as the LockTimeoutError/LockNotAcquiredError the caller gets, not as the wrapper that carried it out of
 * the transaction; a thrown value that is not an Error by its type alone.
 */
export function recordedError(thrown: unknown): { name: string; message: string; stack?: string } {
  const error = thrown instanceof NotAcquired ? thrown.failure : thrown;
  if (!(error instanceof Error)) {
    const type = typeof error === 'object' && error !== null ? (error.constructor?.name ?? 'Object') : typeof error;
    return { name: type, message: `a value of type ${type} was thrown instead of an Error` };
  }
  const name = error.constructor?.name && error.constructor.name !== 'Error' ? error.constructor.name : error.name;
  return { name, message: withoutQuotedValues(error, error.message), ...(error.stack ? { stack: withoutQuotedValues(error, error.stack) } : {}) };
}

/**
 * The library's telemetry while it is on, else undefined: the one thing the hooks test. On when
 * `@opentelemetry/api` is installed and a tracer or meter provider was registered when the app bootstrapped
 * (see startTelemetry()). Process-wide, like OpenTelemetry's own global providers.
 */
export let telemetry: Telemetry | undefined;

let loading: Promise<OpenTelemetryApi | undefined> | undefined;
let madeFor: { tracing: unknown; meter: Meter } | undefined;

/**
 * Loads `@opentelemetry/api` (once; its absence is not an error) and switches telemetry on or off by what is
 * registered now: on with a tracer or meter provider, whose instruments are made here once; off with neither.
 * TransactionHost calls it at bootstrap. Not part of the public API.
 * @internal
 */
export async function startTelemetry(): Promise<Telemetry | undefined> {
  const api = await (loading ??= loadApi());
  if (!api) return (telemetry = undefined);
  const tracing = (api.trace.getTracerProvider() as InstanceType<OpenTelemetryApi['ProxyTracerProvider']>).getDelegate();
  const meter = api.metrics.getMeter(INSTRUMENTATION_NAME);
  const noopTracing = new api.ProxyTracerProvider().getDelegate();
  if (tracing === noopTracing && meter === api.createNoopMeter()) {
    madeFor = undefined;
    return (telemetry = undefined);
  }
  if (madeFor?.tracing !== tracing || madeFor.meter !== meter) {
    madeFor = { tracing, meter };
    telemetry = new Telemetry(api, meter);
  }
  return telemetry;
}

async function loadApi(): Promise<OpenTelemetryApi | undefined> {
  try {
    return await import('@opentelemetry/api');
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' || (error as { code?: string }).code === 'MODULE_NOT_FOUND') return undefined;
    throw error;
  }
}

/** Seconds since `startedAt` (a performance.now() reading). */
export function secondsSince(startedAt: number): number {
  return (performance.now() - startedAt) / 1000;
}
