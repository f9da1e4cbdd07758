import type pg from 'pg';
import type { DataSource } from 'typeorm';
import { poolOf } from './database.js';

// The vanished-client bounds every transaction sets in its BEGIN's batch (the first one on each pooled connection also
// makes the connection's own for its session) (test/reliability/vanished-client.spec.ts and
// test/transaction/vanished-client-bounds.spec.ts check them): left out of the texts, so the tests of what else travels
// with BEGIN read as the SQL they are about. The round trips are counted all the same.
// A session-scope lock's pinned connection sets them for its session first, and resets them at the end.
const BOUND_NAMES = '(?:idle_in_transaction_session_timeout|idle_session_timeout|tcp_keepalives_\\w+|client_connection_check_interval)';
const BOUNDS = new RegExp(`(^|;\\n)(?:SELECT set_config\\('${BOUND_NAMES}'[^\\n]*?|SET LOCAL ${BOUND_NAMES} = '\\w+')(?=;\\n|$)|;\\nRESET ${BOUND_NAMES}(?=;\\n|$)`, 'g');

function withoutBounds(text: string): string {
  return text.replace(BOUNDS, '').replace(/^;\n/, '');
}

/** Records every statement sent to the server through a DataSource's pool: one entry per round trip. */
export class RoundTripLog {
  // The texts as sent; bounds are taken out when they are read, so that the bench, which only counts, pays nothing.
  private readonly raw: string[] = [];
  private active = true;

  private constructor() {}

  /** Starts recording on every client the pool (or the DataSource's pool) hands out from now on. */
  static attach(source: DataSource | pg.Pool): RoundTripLog {
    const log = new RoundTripLog();
    const pool = 'driver' in source ? poolOf(source) : source;
    pool.on('acquire', (client) => {
      const patched = client as typeof client & { txlockRoundTrips?: Set<RoundTripLog> };
      if (!patched.txlockRoundTrips) {
        patched.txlockRoundTrips = new Set();
        const query = client.query.bind(client) as (...args: unknown[]) => unknown;
        (client as { query: unknown }).query = (...args: unknown[]) => {
          const first = args[0] as string | { text?: string };
          const text = typeof first === 'string' ? first : (first?.text ?? '');
          for (const owner of patched.txlockRoundTrips!) if (owner.active) owner.raw.push(text);
          return query(...args);
        };
      }
      patched.txlockRoundTrips.add(log);
    });
    return log;
  }

  /** The statements sent, one entry per round trip, without the vanished-client bounds. */
  get sent(): string[] {
    return this.raw.map(withoutBounds);
  }

  get count(): number {
    return this.raw.length;
  }

  reset(): void {
    this.raw.length = 0;
  }

  stop(): void {
    this.active = false;
  }
}
