import { InvalidOptionError } from '../errors.js';
import { MAX_TIMER_MS } from '../common/durations.js';
import type { IsolationLevel } from './transaction.options.js';
import type { SettingEntry } from './transaction-settings.js';

// The only text an isolation level can put into SQL: looked up here, never pasted from the option.
const ISOLATION_SQL: Readonly<Record<IsolationLevel, string>> = {
  'READ COMMITTED': ' ISOLATION LEVEL READ COMMITTED',
  'REPEATABLE READ': ' ISOLATION LEVEL REPEATABLE READ',
  SERIALIZABLE: ' ISOLATION LEVEL SERIALIZABLE',
};

/**
 * The statements that open a transaction: `BEGIN [ISOLATION LEVEL ...] [READ ONLY]`, `SET LOCAL
 * statement_timeout`, the vanished-client `bounds` (statements of boundStatement() or setLocalBound()) and the
 * caller's `settings` (setConfigStatement()). They travel in a simple-protocol batch, where nothing is bound, so each
 * value is checked here, as the SQL is built: the isolation level against a fixed map, the timeout with
 * Number.isSafeInteger.
 */
export function openingStatements(
  isolation: IsolationLevel | undefined,
  readOnly: boolean | undefined,
  timeoutMs: number | undefined,
  settings: readonly SettingEntry[] = [],
  bounds: readonly string[] = [],
): string[] {
  let begin = 'BEGIN';
  if (isolation !== undefined) {
    if (typeof isolation !== 'string' || !Object.hasOwn(ISOLATION_SQL, isolation)) throw new InvalidOptionError('isolation', isolation, Object.keys(ISOLATION_SQL));
    begin += ISOLATION_SQL[isolation];
  }
  if (readOnly === true) begin += ' READ ONLY';
  const statements = [begin];
  if (timeoutMs !== undefined) statements.push(statementTimeout(timeoutMs));
  if (bounds.length > 0) statements.push(...bounds);
  if (settings.length > 0) statements.push(setConfigStatement(settings, true));
  return statements;
}

/**
 * What a savepoint that stands for a transaction of the app under a test transaction (nestjs-txlock/testing) sets
 * inside itself, since its BEGIN is the test's: `SET LOCAL transaction_read_only = on` and `SET LOCAL
 * statement_timeout`. A read-only transaction may always be made read-only, also inside a savepoint.
 */
export function standInStatements(readOnly: boolean, timeoutMs: number | undefined, settings: readonly SettingEntry[] = []): string[] {
  const statements = readOnly ? ['SET LOCAL transaction_read_only = on'] : [];
  if (timeoutMs !== undefined) statements.push(statementTimeout(timeoutMs));
  if (settings.length > 0) statements.push(setConfigStatement(settings, true));
  return statements;
}

// Setting names the library itself sends (the vanished-client bounds), besides the caller's custom `prefix.name` ones.
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)*$/;

/**
 * One statement that sets every entry: `SELECT set_config('name', value, local)`, one column per setting, so a batch
 * of any size costs one statement. It travels in the opening simple-protocol batch, where node-postgres binds nothing
 * (binding would take a round trip of its own), so no value ever becomes SQL text: digits are written as they are,
 * anything else as `convert_from(decode('<hex>', 'hex'), 'UTF8')`, its UTF-8 bytes in hexadecimal. Names were checked
 * (readSettings(), or the library's own) and are checked again here against the identifier pattern.
 */
export function setConfigStatement(settings: readonly SettingEntry[], local: boolean): string {
  const calls = settings.map(([name, value]) => {
    if (!SETTING_NAME.test(name)) throw new InvalidOptionError('setting name', name, 'an identifier, or "prefix.name"');
    const text = /^\d{1,18}$/.test(value) ? `'${value}'` : `convert_from(decode('${Buffer.from(value, 'utf8').toString('hex')}', 'hex'), 'UTF8')`;
    return `set_config('${name}', ${text}, ${local})`;
  });
  return `SELECT ${calls.join(', ')}`;
}

// The unit each server setting of the vanished-client bound counts in, to read its current value in that unit.
const BOUND_UNITS: Readonly<Record<string, 'ms' | 's' | ''>> = {
  idle_in_transaction_session_timeout: 'ms',
  idle_session_timeout: 'ms',
  client_connection_check_interval: 'ms',
  tcp_keepalives_idle: 's',
  tcp_keepalives_interval: 's',
  tcp_keepalives_count: '',
};

/**
 * One statement that lowers each setting to the entry's value (library-computed digits) unless the session already has
 * a lower one: `set_config(name, least(nullif(<current>, 0), value)::bigint::text, local) AS name`, where 0 means off
 * (or the OS default, for keepalives): `local` entries for the transaction, `session` ones for the session. The
 * current value is read in the same statement, so a limit the server, database or role sets lower is never loosened;
 * each column is named after its setting and holds the value now in force. Time settings are read through
 * `::interval`, which understands how PostgreSQL shows them ('200ms', '5s', '1min').
 */
export function boundStatement(local: readonly SettingEntry[], session: readonly SettingEntry[] = []): string {
  const call = ([name, value]: SettingEntry, isLocal: boolean) => {
    const unit = BOUND_UNITS[name];
    if (unit === undefined || !/^\d{1,12}$/.test(value)) throw new InvalidOptionError('bound setting', name, Object.keys(BOUND_UNITS));
    const seconds = `extract(epoch FROM current_setting('${name}')::interval)`;
    const current = unit === 'ms' ? `${seconds} * 1000` : unit === 's' ? seconds : `current_setting('${name}')::numeric`;
    return `set_config('${name}', least(nullif(${current}, 0), ${value})::bigint::text, ${isLocal}) AS ${name}`;
  };
  return `SELECT ${[...local.map((entry) => call(entry, true)), ...session.map((entry) => call(entry, false))].join(', ')}`;
}

/**
 * `SET LOCAL name = 'value'` for a bound setting whose value was read already, as PostgreSQL shows it (digits and a
 * unit: '1min', '500ms'): a utility statement, which PostgreSQL neither plans nor answers with a row, unlike
 * boundStatement().
 */
export function setLocalBound([name, value]: SettingEntry): string {
  if (BOUND_UNITS[name] === undefined || !SHOWN_VALUE.test(value)) throw new InvalidOptionError('bound setting', `${name} = ${value}`, Object.keys(BOUND_UNITS));
  return `SET LOCAL ${name} = '${value}'`;
}

// How PostgreSQL shows an integer setting: digits, and for a time the largest unit that divides it.
const SHOWN_VALUE = /^\d{1,12}(?:ms|s|min|h|d)?$/;

/** Takes every entry back to the session's default (`RESET`), for session-level settings of a pinned connection. */
export function resetStatements(settings: readonly SettingEntry[]): string[] {
  return settings.map(([name]) => {
    if (!SETTING_NAME.test(name)) throw new InvalidOptionError('setting name', name, 'an identifier');
    return `RESET ${name}`;
  });
}

function statementTimeout(timeoutMs: number): string {
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMER_MS) {
    throw new InvalidOptionError('timeoutMs', timeoutMs, `a whole number from 1 to ${MAX_TIMER_MS}`);
  }
  return `SET LOCAL statement_timeout = ${timeoutMs}`;
}
