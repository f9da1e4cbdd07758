import { TableLockMode, validateTableLockMode } from './lock.options.js';

/** A derived advisory key as a SQL literal. Only bigints the library computed reach here: never caller text. */
function keyLiteral(key: bigint): string {
  if (typeof key !== 'bigint') throw new TypeError('advisory lock keys must be bigints computed by the library');
  // Quoted so that -9223372036854775808 stays a bigint (a bare "-9223372036854775808::bigint" would overflow).
  return `'${key}'::bigint`;
}

/** The integer (milliseconds) for lock_timeout: checked here again because it goes into simple-protocol SQL. */
function millis(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < 1) throw new TypeError('lock timeouts must be positive integers');
  return ms;
}

/** Which advisory lock function: transaction or session level, shared or exclusive, waiting or trying. */
export interface AdvisoryFlavor {
  session: boolean;
  shared: boolean;
  tryOnly: boolean;
}

function lockFunction({ session, shared, tryOnly }: AdvisoryFlavor): string {
  return `pg${tryOnly ? '_try' : ''}_advisory${session ? '' : '_xact'}_lock${shared ? '_shared' : ''}`;
}

/**
 * Every statement of LockService. The advisory statements travel in simple-protocol batches (with BEGIN,
 * savepoints and lock_timeout), so they contain only integers computed by the library and fixed keywords.
 * LOCK TABLE carries identifiers, so it is always sent on its own, never batched.
 */
export const lockSql = {
  /** One statement per key, in the given (sorted) order; a try-lock statement answers `{ ok: boolean }`. */
  lock: (keys: readonly bigint[], flavor: AdvisoryFlavor): string[] =>
    keys.map((key) => `SELECT ${lockFunction(flavor)}(${keyLiteral(key)})${flavor.tryOnly ? ' AS ok' : ''}`),

  /** Session level: one statement per key (reverse order), each answering `{ released: boolean }`. */
  unlock: (keys: readonly bigint[], shared: boolean): string[] =>
    [...keys].reverse().map((key) => `SELECT pg_advisory_unlock${shared ? '_shared' : ''}(${keyLiteral(key)}) AS released`),

  /** Releases every session-level advisory lock of this backend: the last step before a pinned connection goes back to the pool. */
  unlockAll: 'SELECT pg_advisory_unlock_all()',

  /**
   * After a failed session-level acquisition (which a rollback does not undo): releases whichever of
   * `keys` this backend was granted, and nothing else.
   */
  unlockGranted: (keys: readonly bigint[], shared: boolean): string => `SELECT pg_advisory_unlock${shared ? '_shared' : ''}(v.key)
    FROM (VALUES ${keys.map((key) => `(${keyLiteral(key)}, ${classId(key)}::bigint, ${objId(key)}::bigint)`).join(', ')}) AS v(key, classid, objid)
    WHERE EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
      AND l.objsubid = 1 AND l.classid = v.classid::oid AND l.objid = v.objid::oid)`,

  /**
   * Sets lock_timeout for what follows in this transaction, keeping the value it had so restoreTimeout()
   * can put it back (a caller's own SET LOCAL lock_timeout survives our lock).
   */
  setTimeout: (ms: number): string[] => [
    `SELECT set_config('nestjs_txlock.lock_timeout', current_setting('lock_timeout'), true)`,
    `SET LOCAL lock_timeout = ${millis(ms)}`,
  ],
  restoreTimeout: `SELECT set_config('lock_timeout', current_setting('nestjs_txlock.lock_timeout'), true)`,

  /** In an implicit transaction block (session scope), lock_timeout ends with the block: nothing to restore. */
  blockTimeout: (ms: number): string => `SET LOCAL lock_timeout = ${millis(ms)}`,

  savepoint: (name: string): string => `SAVEPOINT ${name}`,
  release: (name: string): string => `RELEASE SAVEPOINT ${name}`,
  rollbackTo: (name: string): string[] => [`ROLLBACK TO SAVEPOINT ${name}`, `RELEASE SAVEPOINT ${name}`],

  /**
   * `tables` are already quoted (and sorted) by resolveTables(); `mode` is checked here again against the eight
   * modes, as the SQL is built, since it may travel in a batch with BEGIN.
   */
  lockTables: (tables: readonly string[], mode: TableLockMode, nowait: boolean): string => {
    validateTableLockMode(mode, 'table lock');
    return `LOCK TABLE ${tables.join(', ')} IN ${mode} MODE${nowait === true ? ' NOWAIT' : ''}`;
  },

  /**
   * Advisory locks of this database in the single-bigint form, with the backend holding or awaiting each.
   * `$1`/`$2` (optional) narrow to one key's classid/objid. waitstart exists from PostgreSQL 14 on.
   */
  holders: (oneKey: boolean): string => `SELECT l.classid::text AS classid, l.objid::text AS objid, l.mode, l.granted, l.pid,
      to_jsonb(l) ->> 'waitstart' AS waitstart, a.application_name, a.client_addr::text AS client_addr,
      a.backend_start, a.xact_start, a.state
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      ${oneKey ? 'AND l.classid = $1::oid AND l.objid = $2::oid' : ''}
    ORDER BY l.granted DESC, l.pid`,
};

/** The high 32 bits of a key, as pg_locks shows them in `classid`. */
export function classId(key: bigint): bigint {
  return BigInt.asUintN(64, key) >> 32n;
}

/** The low 32 bits of a key, as pg_locks shows them in `objid`. */
export function objId(key: bigint): bigint {
  return BigInt.asUintN(32, key);
}

/** The key pg_locks shows as `classid`/`objid` (single-bigint form). */
export function keyFromHalves(classid: string, objid: string): bigint {
  return BigInt.asIntN(64, (BigInt(classid) << 32n) | BigInt(objid));
}
