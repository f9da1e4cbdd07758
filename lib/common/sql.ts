import { createHash } from 'node:crypto';

/**
 * Quotes one PostgreSQL identifier: wraps it in double quotes and doubles any quote inside, so a name
 * taken from metadata or options can never end the identifier and inject SQL.
 */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
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
 * A 64-bit advisory lock key from text: the first 8 bytes of its SHA-256 as a signed bigint, the single-bigint
 * form of pg_advisory_xact_lock. Returned as a decimal string so it can be bound as a parameter.
 */
export function advisoryKey(text: string): string {
  return createHash('sha256').update(text).digest().readBigInt64BE(0).toString();
}
