/** Options of the `shutdown` part of the module options: what `app.close()` (SIGTERM) gives running work. */
export interface ShutdownModuleOptions {
  /**
   * How long, in ms, transactions and session-scope lock calls that were running when the close began may take to
   * finish, before the library rolls them back (ShutdownRollbackError) so that TypeORM can close the pool. Lease holders
   * have their `signal` aborted at once and are waited for as long. Default 10000: a third of Kubernetes' default
   * `terminationGracePeriodSeconds` (30 s), which also has to cover the HTTP server's close and the pool's; raise both
   * together. 0 rolls back at once whatever is still running.
   */
  graceMs?: number;
}

/** The grace period when `shutdown.graceMs` is not set (see ShutdownModuleOptions). */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
