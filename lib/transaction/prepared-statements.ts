import { Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { sqlState } from './sql-state.js';

// invalid_sql_statement_name (the server connection never prepared it), duplicate_prepared_statement (another
// client prepared it there first): both mean statements do not stay on one server connection, and both are raised
// before the statement runs.
const POOLER_SYMPTOMS = new Set(['26000', '42P05']);
// Each pooled connection keeps every statement it prepared until it closes: a bound on the server memory they take.
const MAX_NAMED = 200;

/** A statement pg prepares once per connection under `name`. */
export interface NamedStatement {
  readonly name: string;
  readonly text: string;
}

/**
 * Names the library's own parameterised statements sent outside transactions (counters, get-or-create, leases,
 * single flight) so that PostgreSQL parses and plans each once per pooled connection instead of on every call
 * (pg prepares a named statement on a connection's first use and only binds it after).
 *
 * Off until the bootstrap check saw a direct connection to PostgreSQL (and the module declares no pooler and did
 * not set `preparedStatements: false`): behind a pooler that hands statements to server connections of its own
 * (PgBouncer before 1.21 in transaction mode...) a name prepared on one server connection is unknown on the next.
 * Should that happen anyway, the first such error turns naming off for good (with a warning) and the caller sends
 * the statement again, unnamed. Inside a transaction such an error would abort it, so statements there are never
 * named.
 */
export class PreparedStatements {
  private readonly logger = new Logger('TxLock');
  private readonly templates = new Map<string, NamedStatement>();
  private enabled = false;

  /** Starts naming statements (the bootstrap check found a direct connection). */
  enable(): void {
    this.enabled = true;
  }

  /**
   * What to hand pg for `text` (its values go as query()'s second argument): while naming is on and the bound leaves
   * room, a named statement; else the text itself.
   */
  statement(text: string): string | NamedStatement {
    if (!this.enabled) return text;
    let template = this.templates.get(text);
    if (template === undefined && this.templates.size < MAX_NAMED) {
      template = { name: `txlock_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`, text };
      this.templates.set(text, template);
    }
    // A new object that inherits the name and text and has no property of its own: pg copies a query config's own
    // properties one descriptor at a time (about 1 µs for { name, text, values }, the library's costliest step
    // per statement), and older versions of pg write the values and callback into it, so it must not be shared.
    return template === undefined ? text : (Object.create(template) as NamedStatement);
  }

  /**
   * True when `error`, raised by the named `query`, shows a pooler between the app and PostgreSQL after all:
   * naming is then turned off, and nothing of the statement ran.
   */
  failedOnPooler(query: string | NamedStatement, error: unknown): boolean {
    if (typeof query === 'string' || !POOLER_SYMPTOMS.has(sqlState(error) ?? '')) return false;
    if (this.enabled) {
      this.enabled = false;
      this.logger.warn(
        `A prepared statement was missing on (or already prepared on) the server connection, so a pooler hands this DataSource's ` +
          `statements to server connections of its own. The library's statements are no longer prepared. Declare the pooler with ` +
          `TxLockModule.forRoot({ pooler: 'transaction' }) to skip the attempt.`,
      );
    }
    return true;
  }
}
