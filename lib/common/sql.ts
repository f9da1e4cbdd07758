import { InvalidOptionError } from '../errors.js';
import { advisoryLockKey, RESERVED_LOCK_NAMESPACE } from '../locks/lock-key.js';

/**
 * Quotes one PostgreSQL identifier: wraps it in double quotes and doubles any quote inside, so a name
 * taken from metadata or options can never end the identifier and inject SQL.
 */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]*$/;

/**
 * A library table name from the module options (`name` or `schema.name`, plain identifiers), quoted for SQL;
 * InvalidOptionError names `option` otherwise.
 */
export function qualifiedTableName(table: string, option: string): string {
  const parts = typeof table === 'string' ? table.split('.') : [];
  if (parts.length === 0 || parts.length > 2 || !parts.every((part) => IDENTIFIER.test(part))) {
    throw new InvalidOptionError(option, table, '"name" or "schema.name" made of letters, digits, "_" and "$"');
  }
  return parts.map(quoteIdentifier).join('.');
}

/** Collects bound parameters for one statement; `add` returns the placeholder (`$1`, `$2`...) to write. */
export class SqlParams {
  readonly values: unknown[] = [];

  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/**
 * The advisory lock key of one of the library's own locks (table creation, get-or-create with
 * `{ lock: 'advisory' }`): the locks module's documented derivation of `text`, in the namespace reserved for
 * nestjs-txlock, so it never collides with an application's keys. A decimal string, to bind as `$1::bigint`.
 */
export function advisoryKey(text: string): string {
  return advisoryLockKey(text, RESERVED_LOCK_NAMESPACE).toString();
}
