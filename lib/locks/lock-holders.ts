import type { EntityManager } from 'typeorm';
import { classId, keyFromHalves, lockSql, objId } from './lock.sql.js';

/** A backend holding or awaiting an advisory lock, as `holders()` reports it. */
export interface AdvisoryLockHolder {
  /** The 64-bit key (compare with advisoryLockKey()). */
  key: bigint;
  mode: 'exclusive' | 'shared';
  /** False while the backend is still waiting for it. */
  granted: boolean;
  /** The backend's process id (for pg_terminate_backend). */
  pid: number;
  /** Since when it has been waiting (PostgreSQL 14+), when not granted. */
  waitingSince: Date | null;
  /** Start of the holder's transaction: a transaction-scope lock was taken at or after it. */
  transactionStart: Date | null;
  /** When the holder's connection was opened: a session-scope lock was taken at or after it. */
  backendStart: Date | null;
  applicationName: string | null;
  clientAddress: string | null;
  /** pg_stat_activity state: active, idle in transaction, idle... */
  state: string | null;
}

interface HolderRow {
  classid: string;
  objid: string;
  mode: string;
  granted: boolean;
  pid: number;
  waitstart: string | null;
  application_name: string | null;
  client_addr: string | null;
  backend_start: Date | null;
  xact_start: Date | null;
  state: string | null;
}

/** The advisory locks of this database (or of `key` only), holders first, from pg_locks and pg_stat_activity. */
export async function readHolders(manager: EntityManager, key?: bigint): Promise<AdvisoryLockHolder[]> {
  const params = key === undefined ? [] : [classId(key).toString(), objId(key).toString()];
  const rows: HolderRow[] = await manager.query(lockSql.holders(key !== undefined), params);
  return rows.map((row) => ({
    key: keyFromHalves(row.classid, row.objid),
    mode: row.mode === 'ShareLock' ? 'shared' : 'exclusive',
    granted: row.granted,
    pid: row.pid,
    waitingSince: row.waitstart ? new Date(row.waitstart) : null,
    transactionStart: row.xact_start,
    backendStart: row.backend_start,
    applicationName: row.application_name,
    clientAddress: row.client_addr,
    state: row.state,
  }));
}
