import type { Telemetry } from './telemetry.js';
import type { LeaseOutcome } from './telemetry.types.js';


/**
 * Runs an acquire statement in a `txlock.lease.acquire` span. A row whose previous holder was another process
 * is a takeover (counted in `txlock.lease.takeovers`). The lease's name is a key, so it is not recorded.
 */
export function traceLeaseAcquire<Row extends { token: string; previous_holder?: string | null }>(
  telemetry: Telemetry,
  holderId: string,
  acquire: () => Promise<Row[]>,
): Promise<Row[]> {
  return telemetry.trace('txlock.lease.acquire', {}, acquire, ([row]) => {
    if (!row) return { 'txlock.lease.outcome': 'busy' satisfies LeaseOutcome };
    const takeover = row.previous_holder != null && row.previous_holder !== holderId;
    if (takeover) telemetry.leaseTakeovers.add(1);
    return { 'txlock.lease.outcome': 'acquired' satisfies LeaseOutcome, 'txlock.lease.token': Number(row.token), 'txlock.lease.takeover': takeover };
  });
}

/** Runs an extend statement in a `txlock.lease.renew` span; no row back means the lease was lost (`txlock.lease.losses`). */
export function traceLeaseRenew<Row>(telemetry: Telemetry, token: number, renew: () => Promise<Row[]>): Promise<Row[]> {
  return telemetry.trace('txlock.lease.renew', { 'txlock.lease.token': token }, renew, (rows) => {
    if (rows.length > 0) return { 'txlock.lease.outcome': 'renewed' satisfies LeaseOutcome };
    telemetry.leaseLosses.add(1);
    return { 'txlock.lease.outcome': 'lost' satisfies LeaseOutcome };
  });
}
