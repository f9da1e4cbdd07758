import { assertDurationMs, MAX_DURATION_MS, MAX_TIMER_MS } from '../common/durations.js';
import { allowedKeys, checkOptionKeys, type AllowedKeys, type KeyList } from '../common/option-keys.js';
import { isWellFormed, WELL_FORMED_TEXT } from '../common/text.js';
import { InvalidOptionError } from '../errors.js';

/** How long a lease is held. */
export interface LeaseOptions {
  /**
   * The lease expires by itself this long after it was taken (or last extended) if its holder dies. Required;
   * at most MAX_DURATION_MS (100 years).
   */
  atMostForMs: number;
  /** Even when released early, the lease stays taken until this long after it was taken (at most atMostForMs). Default 0. */
  atLeastForMs?: number;
}

/** Options of `LeaseService.run()`. */
export interface LeaseRunOptions extends LeaseOptions {
  /**
   * While fn runs, extend the lease by `atMostForMs` every this many ms: less than atMostForMs (a third of it leaves
   * room for a missed renewal), at most MAX_TIMER_MS. Default: no renewal.
   */
  renewEveryMs?: number;
}

/** Options of the `leases` part of the module options. */
export interface LeaseModuleOptions {
  /** The lease table, optionally schema-qualified (`jobs.leases`). Default `txlock_leases`. */
  table?: string;
  /** Create the table at bootstrap if it is missing (safe with replicas starting together). Default false. */
  autoCreate?: boolean;
  /** This process's holder id. Default `<hostname>:<pid>:<random instance id>`. */
  holderId?: string;
}

const DURATION_BOUND = 'MAX_DURATION_MS, 100 years';
const TIMER_BOUND = 'MAX_TIMER_MS, the longest delay a Node timer keeps';

/**
 * Throws InvalidOptionError unless `text` can be stored as PostgreSQL text exactly: a non-empty string,
 * well-formed UTF-16 (two names must never become the same text), without NUL (text cannot hold it).
 * Used for lease names and the holder id.
 */
export function validateLeaseText(text: unknown, option: string): void {
  if (typeof text !== 'string' || text.length === 0) throw new InvalidOptionError(option, text, 'a non-empty string');
  if (text.includes('\u0000')) throw new InvalidOptionError(option, text, 'a string without the NUL character (PostgreSQL text cannot hold it)');
  if (!isWellFormed(text)) throw new InvalidOptionError(option, text, `a string that is ${WELL_FORMED_TEXT}`);
}

/** The keys of LeaseOptions. */
export const LEASE_OPTION_KEYS: KeyList<LeaseOptions> = { atMostForMs: true, atLeastForMs: true };
/** What acquire() and run() take. */
export const LEASE_CALLS = {
  acquire: allowedKeys<LeaseOptions>('LeaseService.acquire()', LEASE_OPTION_KEYS),
  run: allowedKeys<LeaseRunOptions>('LeaseService.run()', { ...LEASE_OPTION_KEYS, renewEveryMs: true }),
};

/** Throws InvalidOptionError for a bad lease name, a key `allowed` lacks, or a duration out of range. */
export function validateLease(name: unknown, options: LeaseRunOptions, where: string, allowed: AllowedKeys): void {
  validateLeaseText(name, `${where} name`);
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError(`${where} options`, options, 'an object with atMostForMs');
  checkOptionKeys(options, allowed);
  if (options.atMostForMs === undefined) throw new InvalidOptionError(`${where} "atMostForMs"`, undefined, `a whole number of milliseconds from 1 to ${MAX_DURATION_MS} (${DURATION_BOUND})`);
  assertDurationMs(options.atMostForMs, `${where} "atMostForMs"`, 1, MAX_DURATION_MS, DURATION_BOUND);
  assertDurationMs(options.atLeastForMs, `${where} "atLeastForMs"`, 0, MAX_DURATION_MS, DURATION_BOUND);
  assertDurationMs(options.renewEveryMs, `${where} "renewEveryMs"`, 1, MAX_TIMER_MS, TIMER_BOUND);
  if ((options.atLeastForMs ?? 0) > options.atMostForMs) {
    throw new InvalidOptionError(`${where} "atLeastForMs"`, options.atLeastForMs, `at most atMostForMs (${options.atMostForMs})`);
  }
  // Each renewal pushes the end to atMostForMs from then: one that comes at or after the end finds the lease expired.
  if (options.renewEveryMs !== undefined && options.renewEveryMs >= options.atMostForMs) {
    throw new InvalidOptionError(
      `${where} "renewEveryMs"`,
      options.renewEveryMs,
      `less than atMostForMs (${options.atMostForMs}), so that each renewal lands before the lease expires (a third of it survives a missed renewal)`,
    );
  }
}

/** Throws InvalidOptionError unless `ms` is a duration extend() can add to the database clock. */
export function validateExtension(ms: unknown): void {
  if (ms === undefined) throw new InvalidOptionError('extend ms', ms, `a whole number of milliseconds from 1 to ${MAX_DURATION_MS} (${DURATION_BOUND})`);
  assertDurationMs(ms, 'extend ms', 1, MAX_DURATION_MS, DURATION_BOUND);
}

/** Throws InvalidOptionError unless `lease` names a lease and carries a token acquire() could have issued. */
export function validateLeaseRef(lease: unknown, where: string): void {
  if (typeof lease !== 'object' || lease === null) throw new InvalidOptionError(`${where} lease`, lease, 'a Lease from acquire() (or { name, token })');
  const { name, token } = lease as { name?: unknown; token?: unknown };
  validateLeaseText(name, `${where} lease name`);
  validateToken(token, where);
}

/** Throws InvalidOptionError unless `token` is a fencing token acquire() could have issued (a whole number >= 1). */
export function validateToken(token: unknown, where: string): void {
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token < 1) {
    throw new InvalidOptionError(`${where} token`, token, 'a fencing token from acquire() (a whole number >= 1)');
  }
}
