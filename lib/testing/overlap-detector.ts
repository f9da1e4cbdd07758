import pg from 'pg';

/**
 * Records when each caller enters and leaves a critical section, with timestamps from the database clock
 * (so callers in different processes share one clock), and counts pairs of visits that overlapped.
 * It writes on its own connections, outside any transaction under test.
 */
export class OverlapDetector {
  private constructor(private readonly pool: pg.Pool) {}

  /** Connects to the database of `url` (`connections` of its own) and creates the visits table there if missing. */
  static async open(url: string, connections = 2): Promise<OverlapDetector> {
    // Its own bookkeeping runs at READ COMMITTED whatever the database's default: at SERIALIZABLE, processes recording
    // visits at once would conflict (40001) over the one table.
    const pool = new pg.Pool({ connectionString: url, max: connections, options: '-c default_transaction_isolation=read\\ committed' });
    await pool.query(`CREATE TABLE IF NOT EXISTS txlock_overlap (
      id bigserial PRIMARY KEY, label text NOT NULL, entered timestamptz NOT NULL, exited timestamptz)`).catch((error: { code?: string }) => {
      if (error.code !== '23505' && error.code !== '42P07') throw error; // created by a concurrent process
    });
    return new OverlapDetector(pool);
  }

  /** Runs `fn` as one visit of the section `label`. */
  async visit<T>(label: string, fn: () => Promise<T>): Promise<T> {
    const { rows } = await this.pool.query<{ id: string }>(
      'INSERT INTO txlock_overlap (label, entered) VALUES ($1, clock_timestamp()) RETURNING id',
      [label],
    );
    try {
      return await fn();
    } finally {
      await this.pool.query('UPDATE txlock_overlap SET exited = clock_timestamp() WHERE id = $1', [rows[0]!.id]);
    }
  }

  /** Number of pairs of visits to `label` whose [entered, exited] intervals intersect. */
  async overlaps(label: string): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM txlock_overlap a JOIN txlock_overlap b
         ON a.label = b.label AND a.id < b.id AND a.entered < b.exited AND b.entered < a.exited
       WHERE a.label = $1`,
      [label],
    );
    return Number(rows[0]!.n);
  }

  /** Number of completed visits to `label`. */
  async visits(label: string): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM txlock_overlap WHERE label = $1 AND exited IS NOT NULL', [label]);
    return Number(rows[0]!.n);
  }

  /** Closes its connections; the recorded visits stay in the database. */
  close(): Promise<void> {
    return this.pool.end();
  }
}
