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
  if (timeoutMs !== undefined) statements.push(statementTimeout(timeoutMs));
  return statements;
}

/**
 * What a savepoint that stands for a transaction of the app under a test transaction (nestjs-txlock/testing) sets
 * inside itself, since its BEGIN is the test's: `SET LOCAL transaction_read_only = on` and `SET LOCAL
 * statement_timeout`. A read-only transaction may always be made read-only, also inside a savepoint.
 */
export function standInStatements(readOnly: boolean, timeoutMs: number | undefined): string[] {
  const statements = readOnly ? ['SET LOCAL transaction_read_only = on'] : [];
  if (timeoutMs !== undefined) statements.push(statementTimeout(timeoutMs));
  return statements;
}

function statementTimeout(timeoutMs: number): string {
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMER_MS) {
    throw new InvalidOptionError('timeoutMs', timeoutMs, `a whole number from 1 to ${MAX_TIMER_MS}`);
  }
  return `SET LOCAL statement_timeout = ${timeoutMs}`;
}
