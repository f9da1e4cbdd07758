import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { DataSource } from 'typeorm';
import { TxLockModule } from '../../lib/index.js';
import { startTelemetry } from '../../lib/telemetry/telemetry.js';
import { RoundTripLog } from '../../test/support/round-trips.js';
import type { BenchContext } from '../context.js';
import { localVariant } from '../harness.js';
import { CALLERS, createRows, randomRow } from './transaction-work.js';
import { OurTransactions } from './transactions.js';

/** The baseline: OpenTelemetry's API installed, no provider registered, so the library's telemetry is off. */
export const TELEMETRY_OFF = 'telemetry off (no provider: no-op)';
/** Every span and metric recorded, into OpenTelemetry's in-memory exporters. */
export const TELEMETRY_ON = 'telemetry on (in-memory exporters)';

const KINDS = {
  plain: '8. @Transactional, 3 statements: telemetry',
  locked: '8. @AdvisoryLock + @Transactional: telemetry',
} as const;

/**
 * The SDK as an app would register it, switched on only around the rounds of the "on" variant: the library reads
 * the providers when told to (startTelemetry(), which TransactionHost calls at bootstrap), so the other variants and
 * the other scenarios of this process run with telemetry off.
 */
class InMemoryTelemetry {
  private readonly spans = new InMemorySpanExporter();
  private readonly tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: this.spans })] });
  private readonly meterProvider = new MeterProvider({
    readers: [new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 })],
  });
  private readonly contextManager = new AsyncLocalStorageContextManager();
  exported = 0;

  async on(): Promise<void> {
    context.setGlobalContextManager(this.contextManager.enable());
    trace.setGlobalTracerProvider(this.tracerProvider);
    metrics.setGlobalMeterProvider(this.meterProvider);
    if (!(await startTelemetry())) throw new Error('telemetry did not switch on');
  }

  async off(): Promise<void> {
    await this.tracerProvider.forceFlush();
    this.exported += this.spans.getFinishedSpans().length;
    this.spans.reset();
    trace.disable();
    metrics.disable();
    context.disable();
    if (await startTelemetry()) throw new Error('telemetry did not switch off');
  }

  async close(): Promise<void> {
    await this.tracerProvider.shutdown();
    await this.meterProvider.shutdown();
  }
}

/**
 * Scenario 8: the cost of the library's OpenTelemetry instrumentation. The same @Transactional method (and one
 * under @AdvisoryLock) with telemetry off, the baseline, and on with every span and metric recorded into the
 * SDK's in-memory exporters: the ratio is the instrumentation's overhead, the SDK's own work included.
 */
export async function telemetryScenario({ url, runner }: BenchContext): Promise<void> {
  @Module({
    imports: [TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: CALLERS } }), TxLockModule.forRoot({})],
    providers: [OurTransactions],
  })
  class TelemetryBenchModule {}

  const app = await NestFactory.createApplicationContext(TelemetryBenchModule, { logger: ['error'] });
  const otel = new InMemoryTelemetry();
  try {
    const dataSource = app.get(DataSource);
    await createRows((sql, params) => dataSource.query(sql, params));
    const log = RoundTripLog.attach(dataSource);
    const ours = app.get(OurTransactions);
    for (const kind of Object.keys(KINDS) as (keyof typeof KINDS)[]) {
      const scenario = KINDS[kind];
      await runner.group(
        [
          localVariant({ scenario, variant: TELEMETRY_OFF, callers: CALLERS, log, op: () => ours[kind](randomRow()) }),
          localVariant({
            scenario,
            variant: TELEMETRY_ON,
            callers: CALLERS,
            log,
            op: () => ours[kind](randomRow()),
            beforeRound: () => otel.on(),
            afterRound: () => otel.off(),
            note: () => `${otel.exported.toLocaleString('en-US')} spans exported so far`,
          }),
        ],
        TELEMETRY_OFF,
      );
    }
  } finally {
    await otel.close();
    await app.close();
  }
}
