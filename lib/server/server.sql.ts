import { advisoryLockKey, RESERVED_LOCK_NAMESPACE } from '../locks/lock-key.js';
import { classId, objId } from '../locks/lock.sql.js';

// A key in the library's reserved namespace that nobody takes exclusively: the probe only ever takes it shared,
// so replicas booting together never wait for one another.
const PROBE_KEY = advisoryLockKey('nestjs-txlock:server-probe', RESERVED_LOCK_NAMESPACE);

/** The statements that identify the server and the connection path to it. They carry no caller input. */
export const serverSql = {
  /**
   * One round trip: version(), server_version_num, the backend's pid, the isolation level transactions get by
   * default and the idle_in_transaction_session_timeout they get (the database's and role's settings included), and
   * a probe of the advisory lock manager: a shared transaction-level lock on PROBE_KEY (released when the statement
   * ends) must be granted and must show in pg_locks. The pg_locks read depends on the probe's row, so it runs after
   * the lock was taken. MATERIALIZED needs PostgreSQL 12, so older servers fail here and are named by `version` below.
   */
  identify: `WITH probe AS MATERIALIZED (SELECT pg_try_advisory_xact_lock_shared('${PROBE_KEY}'::bigint) AS locked)
    SELECT version() AS version, current_setting('server_version_num') AS version_num, pg_backend_pid() AS pid, probe.locked,
      current_setting('default_transaction_isolation') AS default_isolation,
      extract(epoch FROM current_setting('idle_in_transaction_session_timeout')::interval) * 1000 AS idle_in_transaction_ms,
      EXISTS (SELECT 1 FROM pg_locks l WHERE probe.locked AND l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
        AND l.objsubid = 1 AND l.classid = ${classId(PROBE_KEY)}::oid AND l.objid = ${objId(PROBE_KEY)}::oid) AS visible
    FROM probe`,

  /** Only version(), to name an engine on which the identification query failed. */
  version: 'SELECT version() AS version',

  /** The pid of the backend answering this statement, to compare with the one the connection was opened on. */
  backendPid: 'SELECT pg_backend_pid() AS pid',
};
