import pg from 'pg';
import { outboxChannel, outboxSql } from '../../lib/outbox/outbox.sql.js';
import type { BenchContext } from '../context.js';
import { median, percentile, type BenchResult } from '../harness.js';
import { BenchWorker } from '../remote.js';

/** Scenario 9's name, and its rows' variants (targets.ts reads them). */
export const OUTBOX_SCENARIO = '9. outbox';
export const OUTBOX_DELIVERY = (replicas: number, concurrency?: number) =>
  `delivered to a one-INSERT handler, ${replicas} replica${replicas === 1 ? '' : 's'}${concurrency === undefined ? '' : `, concurrency: ${concurrency}`}`;
export const OUTBOX_LATENCY = 'commit to handler, NOTIFY (1 replica)';

const TABLE = '"txlock_outbox"';
// Replicas, and delivery loops in each (outbox.concurrency; undefined: the default, 2).
const SETUPS: [replicas: number, concurrency: number | undefined][] = [
  [1, undefined],
  [1, 1],
  [1, 4],
  [4, undefined],
];

/**
 * Scenario 9: the transactional outbox. Throughput: events committed at once (one transaction, with its NOTIFY) and
 * delivered by the relays of 1 and 4 replicas (worker processes; default settings, and one replica with 4 delivery
 * loops) to a handler that makes one INSERT in
 * the delivery transaction; events/s from the COMMIT to the last delivery, counts checked exactly (every event delivered,
 * each effect once). Latency: one event at a time published by this process (publish()'s own statement and NOTIFY),
 * and the time from just before its COMMIT to the start of its handler in the relay's process, on the database clock.
 */
export async function outboxScenario({ url, settings, runner }: BenchContext): Promise<void> {
  const wanted = [...SETUPS.map(([replicas, concurrency]) => OUTBOX_DELIVERY(replicas, concurrency)), OUTBOX_LATENCY].filter((variant) => runner.wantsVariant(variant));
  if (wanted.length === 0) return;
  const quick = settings.rounds < 3;
  const events = quick ? 500 : 20_000;
  const rounds = quick ? 1 : 3;
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const workers: BenchWorker[] = [];
  try {
    await pool.query('CREATE TABLE IF NOT EXISTS bench_outbox_effects (event_id bigint NOT NULL, handled_at timestamptz NOT NULL)');
    for (const statement of outboxSql.createTable(TABLE)) await pool.query(statement);
    for (const [replicas, concurrency] of SETUPS) {
      const variant = OUTBOX_DELIVERY(replicas, concurrency);
      if (!runner.wantsVariant(variant)) continue;
      await Promise.all(workers.splice(0).map((worker) => worker.close()));
      for (let i = 0; i < replicas; i++) workers.push(await BenchWorker.start('outbox-relay.worker', url, { concurrency }));
      runner.progress(`${OUTBOX_SCENARIO}: ${variant}: ${rounds} round(s) of ${events} events`);
      const rates: number[] = [];
      const failures: string[] = [];
      for (let round = 0; round < rounds; round++) {
        const { rate, problem } = await deliveryRound(pool, events);
        rates.push(rate);
        if (problem) failures.push(problem);
        runner.progress(`   round ${round + 1}/${rounds}: ${Math.round(rate)} events/s`);
      }
      runner.results.push(row(variant, replicas, rates, [], failures.length ? `NOT EXACT: ${failures[0]}` : `exact (${events * rounds} events, each delivered once)`));
    }
    if (runner.wantsVariant(OUTBOX_LATENCY)) {
      await Promise.all(workers.splice(0).map((worker) => worker.close()));
      workers.push(await BenchWorker.start('outbox-relay.worker', url, {}));
      const count = quick ? 50 : 1_000;
      runner.progress(`${OUTBOX_SCENARIO}: ${OUTBOX_LATENCY}: ${count} events, one every 5 ms`);
      const latencies = await latencyRun(pool, count);
      const p50 = percentile(latencies, 0.5);
      runner.progress(`   p50 ${p50.toFixed(2)} ms, p99 ${percentile(latencies, 0.99).toFixed(2)} ms`);
      runner.results.push(row(OUTBOX_LATENCY, 1, [], latencies, `${latencies.length} of ${count} handled`));
    }
  } finally {
    await Promise.all(workers.map((worker) => worker.close()));
    await pool.query('DROP TABLE IF EXISTS bench_outbox_effects').catch(() => undefined);
    await pool.query(`DROP TABLE IF EXISTS ${TABLE}`).catch(() => undefined);
    await pool.end();
  }
}

// `events` committed at once; the time until the relays have delivered them all.
async function deliveryRound(pool: pg.Pool, events: number): Promise<{ rate: number; problem?: string }> {
  await pool.query(`TRUNCATE bench_outbox_effects, ${TABLE}`);
  const client = await pool.connect();
  let committed: number;
  try {
    await client.query('BEGIN');
    await client.query(`INSERT INTO ${TABLE} (topic, payload) SELECT 'bench.event', jsonb_build_object('n', g) FROM generate_series(1, $1::int) g`, [events]);
    await client.query('SELECT pg_notify($1, $2)', [outboxChannel(TABLE), '']);
    await client.query('COMMIT');
    committed = performance.now();
  } finally {
    client.release();
  }
  for (;;) {
    const { rows } = await pool.query<{ pending: number }>(`SELECT count(*)::int AS pending FROM ${TABLE} WHERE status = 'pending'`);
    if (rows[0]!.pending === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seconds = (performance.now() - committed) / 1000;
  const { rows } = await pool.query<{ effects: number; distinct: number; delivered: number }>(
    `SELECT (SELECT count(*)::int FROM bench_outbox_effects) AS effects, (SELECT count(DISTINCT event_id)::int FROM bench_outbox_effects) AS distinct,
            (SELECT count(*)::int FROM ${TABLE} WHERE status = 'delivered') AS delivered`,
  );
  const { effects, distinct, delivered } = rows[0]!;
  const exact = effects === events && distinct === events && delivered === events;
  return { rate: events / seconds, ...(exact ? {} : { problem: `${events} events: ${delivered} delivered, ${effects} effects, ${distinct} distinct` }) };
}

// One event every 5 ms, each published as OutboxService.publish() does (one statement, NOTIFY at COMMIT); latency from
// the database clock just before COMMIT to the handler's first statement.
async function latencyRun(pool: pg.Pool, count: number): Promise<number[]> {
  await pool.query(`TRUNCATE bench_outbox_effects, ${TABLE}`);
  const publish = outboxSql.publish(TABLE, false, true);
  const client = await pool.connect();
  const before = new Map<string, number>();
  try {
    for (let i = 0; i < count; i++) {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: string }>(publish, ['bench.event', null, JSON.stringify({ i }), 0, null, outboxChannel(TABLE)]);
      const { rows: clock } = await client.query<{ at: number }>(`SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS at`);
      await client.query('COMMIT');
      before.set(rows[0]!.id, clock[0]!.at);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } finally {
    client.release();
  }
  for (let waited = 0; waited < 10_000; waited += 20) {
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM bench_outbox_effects');
    if (rows[0]!.n >= count) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const { rows } = await pool.query<{ event_id: string; at: number }>(`SELECT event_id::text, extract(epoch FROM handled_at)::float8 * 1000 AS at FROM bench_outbox_effects`);
  return rows.map((row) => row.at - before.get(row.event_id)!).sort((a, b) => a - b);
}

function row(variant: string, replicas: number, rates: number[], latencies: number[], note: string): BenchResult {
  const opsPerSec = rates.length ? median(rates) : 0;
  return {
    scenario: OUTBOX_SCENARIO,
    variant,
    concurrency: replicas,
    opsPerSec,
    ...(rates.length ? { minOpsPerSec: Math.min(...rates), maxOpsPerSec: Math.max(...rates), rounds: rates } : {}),
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    roundTripsPerOp: 0,
    note,
  };
}
