import { InvalidOptionError } from '../errors.js';
import { assertWholeNumber } from '../transaction/transaction.options.js';

/** How long a lease is held. */
export interface LeaseOptions {
  /** The lease expires by itself this long after it was taken (or last extended) if its holder dies. Required. */
  atMostForMs: number;
  /** Even when released early, the lease stays taken until this long after it was taken. Default 0. */
  atLeastForMs?: number;
}

/** Options of `LeaseService.run()`. */
export interface LeaseRunOptions extends LeaseOptions {
  /** While fn runs, extend the lease by `atMostForMs` every this many ms. Default: no renewal. */
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

/** Throws InvalidOptionError unless the lease name and durations make sense. */
export function validateLease(name: unknown, options: LeaseRunOptions, where: string): void {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidOptionError(`${where} name`, name, 'a non-empty string');
  if (options.atMostForMs === undefined) throw new InvalidOptionError(`${where} "atMostForMs"`, undefined, 'a whole number >= 1');
  assertWholeNumber(options.atMostForMs, `${where} "atMostForMs"`, 1);
  assertWholeNumber(options.atLeastForMs, `${where} "atLeastForMs"`, 0);
  assertWholeNumber(options.renewEveryMs, `${where} "renewEveryMs"`, 1);
  if ((options.atLeastForMs ?? 0) > options.atMostForMs) {
    throw new InvalidOptionError(`${where} "atLeastForMs"`, options.atLeastForMs, `at most atMostForMs (${options.atMostForMs})`);
  }
}
