import { DEFAULT_DATA_SOURCE_NAME } from '../transaction/resolve-data-source.js';
import { processWide } from '../common/process-state.js';

/**
 * What sits between the app and PostgreSQL (module option `pooler`): `'none'` (a direct connection, the
 * default), `'session'` (a pooler that keeps one server connection per client connection for its whole life,
 * such as PgBouncer pool_mode=session) or `'transaction'` (one that hands each transaction, or each statement
 * outside one, to whichever server connection is free: PgBouncer pool_mode=transaction, RDS Proxy, Supavisor).
 */
export type PoolerMode = 'none' | 'session' | 'transaction';

/** The valid values of the module option `pooler`. */
export const POOLER_MODES: readonly PoolerMode[] = ['none', 'session', 'transaction'];

const SESSION_SCOPE_METHODS = processWide('session-scope-methods-key', () => Symbol('nestjs-txlock:session-scope-methods'));

/** A method whose decorator takes a session-scope lock, and the DataSource registration it locks on. */
interface SessionScopeMethod {
  method: string;
  dataSource: string;
}

/**
 * Records on the class that `methodName` takes a session-scope lock on the DataSource `dataSource`, so that a
 * module declared behind a transaction pooler refuses it at bootstrap instead of on its first call.
 */
export function markSessionScope(target: object, methodName: string, dataSource: string | undefined): void {
  const type = typeof target === 'function' ? target : target.constructor;
  const marks = (Reflect.getMetadata(SESSION_SCOPE_METHODS, type) ?? []) as SessionScopeMethod[];
  Reflect.defineMetadata(SESSION_SCOPE_METHODS, [...marks, { method: methodName, dataSource: dataSource ?? DEFAULT_DATA_SOURCE_NAME }], type);
}

/** The session-scope methods (`Class.method`) of `types` that lock on the DataSource registered as `dataSource`. */
export function sessionScopeMethods(types: Iterable<unknown>, dataSource: string): string[] {
  const found = new Set<string>();
  for (const type of types) {
    if (typeof type !== 'function') continue;
    for (const mark of (Reflect.getMetadata(SESSION_SCOPE_METHODS, type) ?? []) as SessionScopeMethod[]) {
      if (mark.dataSource === dataSource) found.add(mark.method);
    }
  }
  return [...found];
}
