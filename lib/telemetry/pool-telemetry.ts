import { secondsSince, telemetry } from './telemetry.js';

/** Records the wait for a pooled connection that began at `startedAt` (performance.now()), if telemetry is still on. */
export function recordPoolWait(startedAt: number, outcome: 'acquired' | 'timeout' | 'error'): void {
  telemetry?.poolWait.record(secondsSince(startedAt), { 'txlock.pool.outcome': outcome });
}
