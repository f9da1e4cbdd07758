import { afterAll, beforeAll } from '@jest/globals';
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';

/** What useTelemetry() collected; read inside tests. */
export interface CollectedTelemetry {
  /** Finished spans named `name` (all when omitted), after flushing pending exports. */
  spans(name?: string): Promise<ReadableSpan[]>;
  /** The data points of metric `name` as of now (cumulative since the providers were registered). */
  points<T = number>(name: string): Promise<DataPoint<T>[]>;
  /** Forgets the finished spans. */
  resetSpans(): void;
  /**
   * Everything the exporters hold, as text: each finished span's name, attributes, events (names and attributes),
   * links and status, and the attributes of every metric's data points. For asserting what never appears.
   */
  everything(): Promise<string>;
}

/**
 * Registers OpenTelemetry's in-memory span and metric exporters as the global providers (with an AsyncLocalStorage
 * context manager, so spans nest) in a beforeAll, and unregisters them in afterAll. Call it before useTestApp(),
 * so they are registered when the app boots: telemetry is switched on at bootstrap.
 */
export function useTelemetry(): CollectedTelemetry {
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spanExporter })] });
  const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const contextManager = new AsyncLocalStorageContextManager();
  beforeAll(() => {
    context.setGlobalContextManager(contextManager.enable());
    trace.setGlobalTracerProvider(tracerProvider);
    metrics.setGlobalMeterProvider(meterProvider);
  });
  afterAll(async () => {
    trace.disable();
    metrics.disable();
    context.disable();
    await tracerProvider.shutdown();
    await meterProvider.shutdown();
  });
  return {
    async spans(name) {
      await tracerProvider.forceFlush();
      const spans = spanExporter.getFinishedSpans();
      return name === undefined ? spans : spans.filter((span) => span.name === name);
    },
    async points<T>(name: string) {
      const { resourceMetrics } = await reader.collect();
      const metric = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics).find((candidate) => candidate.descriptor.name === name);
      return (metric?.dataPoints ?? []) as DataPoint<T>[];
    },
    resetSpans: () => spanExporter.reset(),
    async everything() {
      await tracerProvider.forceFlush();
      const spans = spanExporter.getFinishedSpans().map((span) => ({
        name: span.name,
        attributes: span.attributes,
        events: span.events.map((event) => ({ name: event.name, attributes: event.attributes })),
        links: span.links.map((link) => link.attributes),
        status: span.status,
      }));
      const { resourceMetrics } = await reader.collect();
      const metrics = resourceMetrics.scopeMetrics.flatMap((scope) =>
        scope.metrics.map((metric) => ({ name: metric.descriptor.name, attributes: metric.dataPoints.map((point) => point.attributes) })),
      );
      return JSON.stringify({ spans, metrics });
    },
  };
}

/** The total count of a histogram's data points. */
export function histogramCount(points: DataPoint<Histogram>[]): number {
  return points.reduce((sum, point) => sum + point.value.count, 0);
}
