/** The work every scenario 1 variant does, shared with the typeorm-transactional worker process. */

/** Concurrent callers, and pool size, of scenario 1. */
export const CALLERS = 8;
const ROWS = 1_000;
const STATEMENTS = ['SELECT n FROM bench_row WHERE id = $1', 'SELECT n + 1 AS next FROM bench_row WHERE id = $1', 'SELECT count(*) FROM bench_row WHERE id = $1'];

/** The three transactions of scenario 1, and the row group each is shown in. */
export const TRANSACTION_KINDS = {
  plain: '1. transaction, 3 statements',
  strict: '1. transaction, SERIALIZABLE read only',
  locked: '1. transaction + advisory lock',
} as const;

export type TransactionKind = keyof typeof TRANSACTION_KINDS;

/** What a peer sends itself for an option it does not have (its users' way), in the transaction's first statement. */
export const PEER_PRELUDE: Record<TransactionKind, string | undefined> = {
  plain: undefined,
  strict: 'SET TRANSACTION READ ONLY',
  locked: 'SELECT pg_advisory_xact_lock($1)',
};

type Query = (sql: string, params: unknown[]) => Promise<unknown>;

/** A random row id. */
export function randomRow(): number {
  return 1 + Math.floor(Math.random() * ROWS);
}

/** Creates the rows the statements read. */
export async function createRows(query: Query): Promise<void> {
  await query('CREATE TABLE IF NOT EXISTS bench_row (id int PRIMARY KEY, n int NOT NULL)', []);
  await query('INSERT INTO bench_row SELECT g, 0 FROM generate_series(1, $1) g ON CONFLICT DO NOTHING', [ROWS]);
}

/** The three statements on row `id`, after the prelude the caller must send itself for `kind` (none for ours). */
export async function runStatements(query: Query, id: number, prelude?: TransactionKind): Promise<void> {
  const first = prelude && PEER_PRELUDE[prelude];
  if (first) await query(first, prelude === 'locked' ? [id] : []);
  for (const sql of STATEMENTS) await query(sql, [id]);
}
