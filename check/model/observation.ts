/** What one run of a program left behind, as the model compares it. */
export interface Observation {
  /**
   * Outcome of each operation and request (opKey/requestKey): `ok`, `ok:refused` (tryIncrement not applied),
   * `ok:created` / `ok:found` (get-or-create), `caught:<error>` (a catch block), or the error's class name
   * (`QueryFailedError:<SQLSTATE>` for statement failures).
   */
  results: Record<string, string>;
  /** Labels of the committed rows of model_item, sorted. */
  rows: string[];
  /** Committed counter values by key. */
  counters: Record<string, number>;
  /** Rows of model_goc per key. */
  goc: Record<string, number>;
  /** Pairs of lock visits on one key that overlapped while both held the lock (must be none). */
  overlaps: string[];
  /** What the program left behind: checked-out connections, open transactions, advisory locks (must be none). */
  leaks: string[];
  /** The program did not finish within the watchdog's time. */
  hung: boolean;
  /** Order in which operations started (`s<id>`) and settled (`e<id>`): guides the model's search. */
  trace: string[];
  /** Wall time of the run, ms. */
  ms: number;
}

/** The name an error is compared by: its class name, plus the SQLSTATE for statement failures. */
export function errorName(error: unknown): string {
  if (!(error instanceof Error)) return `non-error:${String(error)}`;
  const name = error.constructor?.name && error.constructor.name !== 'Error' ? error.constructor.name : error.name;
  if (name === 'QueryFailedError') {
    const code = (error as { driverError?: { code?: string }; code?: string }).driverError?.code ?? (error as { code?: string }).code;
    return code ? `${name}:${code}` : name;
  }
  return name;
}

/**
 * Coarse outcomes (`--outcomes coarse`): every error is just `error`, so a build whose error classes differ (d62e977
 * predates TransactionEndedError, ConnectionLostError...) is compared on what it did: which calls succeeded, what
 * they committed, what they excluded.
 */
export function coarse(value: string): string {
  if (value.startsWith('ok')) return value;
  return value.startsWith('caught:') ? 'caught:error' : 'error';
}
