import { spawn, type ChildProcess } from 'node:child_process';
import type { DataSource } from 'typeorm';

const RESULT_MARK = '@@txlock-result ';
const READY_MARK = 'txlock-ready';

/** A worker script started as its own OS process. */
export interface WorkerProcess {
  /** The worker's OS process. */
  child: ChildProcess;
  /** Resolves with the value the worker's main returned; rejects when it failed or was killed. */
  result: Promise<unknown>;
  /** Everything the worker printed to stdout so far (a worker can print markers such as "ready"). */
  stdout(): string;
  /** Everything the worker printed to stderr so far. */
  stderr(): string;
}

/** Options of spawnWorker(). */
export interface WorkerOptions {
  /** The database the worker works on: its DATABASE_URL. */
  url: string;
  /** Passed to the worker's main as JSON. */
  input?: unknown;
  /** The worker's index among its siblings (0 by default). */
  index?: number;
  /** Extra arguments for node (e.g. a loader). */
  execArgv?: string[];
}

/**
 * Starts `script` (a JavaScript file whose body is workerMain(...)) as a separate Node process, with
 * DATABASE_URL, its index and its input in its environment: for race tests whose claim is cross-process
 * (several replicas of an app), where in-process concurrency would prove less.
 */
export function spawnWorker(script: string, options: WorkerOptions): WorkerProcess {
  const index = options.index ?? 0;
  const child = spawn(process.execPath, [...(options.execArgv ?? []), script], {
    env: { ...process.env, DATABASE_URL: options.url, TXLOCK_WORKER_INDEX: String(index), TXLOCK_WORKER_INPUT: JSON.stringify(options.input ?? null) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const result = new Promise<unknown>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_MARK));
      if (code === 0 && line) resolve(JSON.parse(line.slice(RESULT_MARK.length)));
      else reject(new Error(`worker ${script}#${index} exited with ${code ?? signal}:\n${stderr}`));
    });
  });
  return { child, result, stdout: () => stdout, stderr: () => stderr };
}

/**
 * The body of a worker script: reads its input, runs `main`, hands the result to spawnWorker() and exits.
 * Any error exits non-zero with its stack on stderr.
 */
export function workerMain<I, O>(main: (input: I, context: { url: string; index: number }) => Promise<O>): void {
  const url = process.env.DATABASE_URL!;
  const index = Number(process.env.TXLOCK_WORKER_INDEX ?? 0);
  const input = JSON.parse(process.env.TXLOCK_WORKER_INPUT ?? 'null') as I;
  main(input, { url, index }).then(
    (output) => process.stdout.write(`${RESULT_MARK}${JSON.stringify(output ?? null)}\n`, () => process.exit(0)),
    (error: unknown) => process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`, () => process.exit(1)),
  );
}

/**
 * In a worker: says it is ready and waits until startWorkers() lets every worker go at once, which it does
 * through a table of the test database. Returns the shared start time (epoch ms).
 */
export async function waitAtStartLine(dataSource: DataSource): Promise<number> {
  process.stdout.write(`${READY_MARK}\n`);
  for (;;) {
    const rows: { start_at: string }[] = await dataSource.query('SELECT start_at FROM txlock_start_line').catch(() => []);
    if (rows.length) return Number(rows[0]!.start_at);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Waits until every worker is at its start line (workers boot at their own pace: a Nest app takes a while),
 * then starts them all `inMs` from now, so their work overlaps for real. Returns the start time (epoch ms).
 */
export async function startWorkers(dataSource: DataSource, workers: WorkerProcess[], inMs = 100): Promise<number> {
  await dataSource.query('CREATE TABLE IF NOT EXISTS txlock_start_line (start_at bigint NOT NULL)');
  await dataSource.query('TRUNCATE txlock_start_line');
  while (!workers.every((w) => w.stdout().includes(READY_MARK))) {
    const failed = workers.find((w) => w.child.exitCode !== null);
    if (failed) await failed.result; // surfaces the worker's error instead of waiting forever
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const startAt = Date.now() + inMs;
  await dataSource.query('INSERT INTO txlock_start_line VALUES ($1)', [startAt]);
  return startAt;
}
