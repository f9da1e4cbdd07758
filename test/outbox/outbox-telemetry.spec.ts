import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { trace, type SpanContext } from '@opentelemetry/api';
import { OnOutboxEvent, OutboxService, TransactionHost } from '../../lib/index.js';
import { eventually } from '../support/gate.js';
import { useTelemetry } from '../support/telemetry.js';
import { useTestApp } from '../support/test-app.js';

let handled = 0;

@Injectable()
class Handler {
  @OnOutboxEvent('traced')
  async handle(): Promise<void> {
    handled++;
  }
}

describe('outbox telemetry', () => {
  const collected = useTelemetry(); // before the app: telemetry is switched on at bootstrap
  const t = useTestApp({ providers: [Handler], txlock: { autoCreate: true } });

  it("a delivery span links to the publishing transaction's span, and names the topic but never the key or payload", async () => {
    let publishing: SpanContext | undefined;
    await t.get(TransactionHost).run(async () => {
      publishing = trace.getActiveSpan()!.spanContext(); // the transaction's span
      await t.get(OutboxService).publish('traced', { secret: 'payload-7f3a' }, { key: 'key-9c2e' });
    });
    await eventually(async () => (await collected.spans('txlock.outbox.deliver')).length === 1);
    const published = (await collected.spans('txlock.transaction')).find((span) => span.spanContext().spanId === publishing!.spanId);
    expect(published).toBeDefined();
    const [delivery] = await collected.spans('txlock.outbox.deliver');
    expect(handled).toBe(1);
    expect(delivery!.links).toHaveLength(1);
    expect(delivery!.links[0]!.context).toMatchObject({ traceId: published!.spanContext().traceId, spanId: published!.spanContext().spanId });
    // A child of the delivery's own transaction span, in a trace of its own.
    expect(delivery!.spanContext().traceId).not.toBe(published!.spanContext().traceId);
    expect(delivery!.attributes).toMatchObject({ 'db.system.name': 'postgresql', 'txlock.outbox.topic': 'traced', 'txlock.outbox.attempt': 1 });
    const everything = await collected.everything();
    expect(everything).not.toContain('payload-7f3a');
    expect(everything).not.toContain('key-9c2e');
    const delivered = await collected.points('txlock.outbox.delivered');
    expect(delivered.map((point) => [point.attributes['txlock.outbox.topic'], point.value])).toEqual([['traced', 1]]);
  });
});
