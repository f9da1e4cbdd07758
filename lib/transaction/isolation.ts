import { InvalidOptionError, WeakerIsolationError } from '../errors.js';
import { standingFor, type TransactionScope } from './transaction-scope.js';
import type { IsolationLevel } from './transaction.options.js';

// PostgreSQL runs READ UNCOMMITTED as READ COMMITTED.
const STRENGTH: Readonly<Record<string, number>> = { 'READ UNCOMMITTED': 0, 'READ COMMITTED': 0, 'REPEATABLE READ': 1, SERIALIZABLE: 2 };

/** The level PostgreSQL runs when none is asked for: its default_transaction_isolation setting, as BEGIN spells it. */
export function isolationFromSetting(setting: string | undefined): string | undefined {
  const level = setting?.toUpperCase();
  return level !== undefined && Object.hasOwn(STRENGTH, level) ? level : undefined;
}

/**
 * Makes sure a call that asks for `requested` runs at a level at least as strong, inside `scope`'s transaction: a
 * savepoint or a joined call runs at its transaction's level, which cannot change once something ran in it. So a
 * stronger level raises the transaction's own when nothing has been sent in it yet (its BEGIN is still held back),
 * and is refused with WeakerIsolationError otherwise, never silently weakened.
 */
export function assertIsolation(requested: string | undefined, scope: TransactionScope, where: string, apart = false): void {
  if (requested === undefined) return;
  if (typeof requested !== 'string' || !Object.hasOwn(STRENGTH, requested)) throw new InvalidOptionError(`${where} isolation`, requested, Object.keys(STRENGTH));
  const standing = standingFor(scope);
  // Outside the app's transactions under nestjs-txlock/testing, or `apart` (TypeORM's own API joined to an app
  // transaction only because a test runs, with joinDataSource: false): production would begin a transaction of its own
  // at that level; the kit runs it at the test transaction's, as it does @Transactional({ isolation }) (docs/testing.md).
  if (apart || standing.kind === 'test') return;
  const current = standing.isolation ?? 'READ COMMITTED';
  if (STRENGTH[requested]! <= STRENGTH[current]!) return;
  if (!scope.connection.raiseIsolation(standing, requested as IsolationLevel)) throw new WeakerIsolationError(requested, current, where);
}
