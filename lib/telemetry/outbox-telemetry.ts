import type { Counter, Histogram, Link } from '@opentelemetry/api';
import { DB_SYSTEM, INSTRUMENTATION_NAME, telemetry, type Telemetry } from './telemetry.js';
import type { OutboxFailureOutcome } from './telemetry.types.js';

/** The outbox's instruments, made once per Telemetry (the library's are made at bootstrap; these on first use). */
interface OutboxInstruments {
  delivered: Counter;
  failures: Counter;
  lag: Histogram;
}

const instruments = new WeakMap<Telemetry, OutboxInstruments>();
const LAG_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300];
// W3C trace context's traceparent: version, trace id, parent span id, flags.
const TRACE_PARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function outboxInstruments(t: Telemetry): OutboxInstruments {
  let made = instruments.get(t);
  if (!made) {
    const meter = t.api.metrics.getMeter(INSTRUMENTATION_NAME);
    made = {
      delivered: meter.createCounter('txlock.outbox.delivered', { unit: '{event}', description: 'Outbox events delivered to their handlers (committed).' }),
      failures: meter.createCounter('txlock.outbox.failures', { unit: '{event}', description: 'Outbox deliveries whose handler failed: retried later, or parked.' }),
      lag: meter.createHistogram('txlock.outbox.delivery.lag', {
        unit: 's',
        description: 'Time from an outbox event\'s row being written to its delivery starting (database clock).',
        advice: { explicitBucketBoundaries: LAG_BUCKETS },
      }),
    };
    instruments.set(t, made);
  }
  return made;
}

/**
 * The W3C `traceparent` of the active span (the publishing transaction's, inside one), to keep with an event, or
 * null when telemetry is off or no span is active.
 */
export function activeTraceParent(): string | null {
  if (!telemetry) return null;
  const { api } = telemetry;
  const span = api.trace.getSpanContext(api.context.active());
  if (!span || !api.isSpanContextValid(span)) return null;
  return `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** What a delivery span says of its event. */
export interface DeliveredEvent {
  topic: string;
  attempt: number;
  traceParent: string | null;
  lagSeconds: number;
}

/**
 * Runs one event's handlers in a `txlock.outbox.deliver` span, a child of the delivery transaction's span, linked to
 * the span that was active where the event was published (its transaction's): a trace shows both sides. The topic
 * is recorded (topics are the app's names, like a lock's label); the key and payload never are.
 */
export function traceDelivery<T>(t: Telemetry, event: DeliveredEvent, run: () => Promise<T>): Promise<T> {
  const parent = event.traceParent ? TRACE_PARENT.exec(event.traceParent) : null;
  const links: Link[] = parent ? [{ context: { traceId: parent[1]!, spanId: parent[2]!, traceFlags: parseInt(parent[3]!, 16), isRemote: true } }] : [];
  outboxInstruments(t).lag.record(Math.max(0, event.lagSeconds), { 'txlock.outbox.topic': event.topic });
  const attributes = { ...DB_SYSTEM, 'txlock.outbox.topic': event.topic, 'txlock.outbox.attempt': event.attempt };
  return t.tracer.startActiveSpan('txlock.outbox.deliver', { attributes, links }, async (span) => {
    try {
      return await run();
    } catch (error) {
      t.fail(span, error);
      throw error;
    } finally {
      span.end();
    }
  });
}

/** Counts `count` events of `topic` delivered (their transaction committed). */
export function recordDelivered(t: Telemetry, topic: string, count: number): void {
  outboxInstruments(t).delivered.add(count, { 'txlock.outbox.topic': topic });
}

/** Counts a failed delivery of an event of `topic`: retried later, or parked after its last attempt. */
export function recordDeliveryFailure(t: Telemetry, topic: string, outcome: OutboxFailureOutcome): void {
  outboxInstruments(t).failures.add(1, { 'txlock.outbox.topic': topic, 'txlock.outbox.outcome': outcome });
}
