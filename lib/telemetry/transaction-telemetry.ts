import type { Span } from '@opentelemetry/api';
import { CommitOutcomeUnknownError } from '../errors.js';
import { sqlState } from '../transaction/sql-state.js';
import { DB_SYSTEM, type Telemetry } from './telemetry.js';
import type { TransactionOutcome } from './telemetry.types.js';


/** What the retry loop of one traced transaction reports. */
export class TransactionObservation {
  private attempts = 0;

  constructor(
    private readonly telemetry: Telemetry,
    private readonly span: Span,
  ) {}

  /** A new attempt begins. */
  attempt(): void {
    this.attempts++;
  }

  /** The attempt failed with a serialization failure or deadlock and will be retried. */
  retry(error: unknown): void {
    const code = sqlState(error);
    this.telemetry.retries.add(1, code ? { 'db.response.status_code': code } : {});
    this.span.addEvent('txlock.transaction.attempt', { 'txlock.transaction.attempt': this.attempts, 'txlock.transaction.outcome': 'retried', ...(code ? { 'db.response.status_code': code } : {}) });
  }

  /** The last allowed attempt failed too. */
  exhausted(): void {
    this.telemetry.retriesExhausted.add(1);
  }

  /** Ends the span with the final outcome. */
  end(error?: unknown): void {
    const outcome: TransactionOutcome = error === undefined ? 'committed' : error instanceof CommitOutcomeUnknownError ? 'unknown' : 'rolled_back';
    this.span.setAttributes({ 'txlock.transaction.attempts': this.attempts, 'txlock.transaction.outcome': outcome });
    if (error !== undefined) this.telemetry.fail(this.span, error);
    this.span.end();
  }
}

/**
 * Runs a transaction (all of its attempts) in an active `txlock.transaction` span, so spans started inside it
 * (locks, the app's own) are its children.
 */
export function traceTransaction<T>(
  telemetry: Telemetry,
  settings: { propagation: string; isolation?: string; readOnly?: boolean; database?: string },
  run: (observation: TransactionObservation) => Promise<T>,
): Promise<T> {
  const attributes = {
    'txlock.transaction.propagation': settings.propagation,
    'txlock.transaction.isolation': settings.isolation ?? 'DEFAULT',
    'txlock.transaction.read_only': settings.readOnly ?? false,
    ...(settings.database ? { 'db.namespace': settings.database } : {}),
  };
  return telemetry.tracer.startActiveSpan('txlock.transaction', { attributes: { ...DB_SYSTEM, ...attributes } }, async (span) => {
    const observation = new TransactionObservation(telemetry, span);
    try {
      const value = await run(observation);
      observation.end();
      return value;
    } catch (error) {
      observation.end(error);
      throw error;
    }
  });
}
