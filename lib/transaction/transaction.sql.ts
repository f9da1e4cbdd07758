import { InvalidOptionError } from '../errors.js';
import { MAX_TIMER_MS } from '../common/durations.js';
import type { IsolationLevel } from './transaction.options.js';

// The only text an isolation level can put into SQL: looked up here, never pasted from the option.
const ISOLATION_SQL: Readonly<Record<IsolationLevel, string>> = {
  'READ COMMITTED': ' ISOLATION LEVEL READ COMMITTED',
  'REPEATABLE READ': ' ISOLATION LEVEL REPEATABLE READ',
  SERIALIZABLE: ' ISOLATION LEVEL SERIALIZABLE',
};

/**
 * The statements that open a transaction: `BEGIN [ISOLATION LEVEL ...] [READ ONLY]` and `SET LOCAL
 * statement_timeout`. They travel in a simple-protocol batch, where nothing is bound, so each value is checked
 * here, as the SQL is built: the isolation level against a fixed map, the timeout with Number.isSafeInteger.
 */
export function openingStatements(isolation: IsolationLevel | undefined, readOnly: boolean | undefined, timeoutMs: number | undefined): string[] {
  let begin = 'BEGIN';
  if (isolation !== undefined) {
    if (typeof isolation !== 'string' || !Object.hasOwn(ISOLATION_SQL, isolation)) throw new InvalidOptionError('isolation', isolation, Object.keys(ISOLATION_SQL));
    begin += ISOLATION_SQL[isolation];
  }
  if (readOnly === true) begin += ' READ ONLY';
  const statements = [begin];
  if (timeoutMs !== undefined) {
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMER_MS) {
      throw new InvalidOptionError('timeoutMs', timeoutMs, `a whole number from 1 to ${MAX_TIMER_MS}`);
    }
    statements.push(`SET LOCAL statement_timeout = ${timeoutMs}`);
  }
  return statements;
}
