import { spawn, type ChildProcess } from 'node:child_process';
import { join, relative } from 'node:path';




const RESULT_MARK = '@@txlock-result ';

/** A worker script started as its own OS process. */
export interface WorkerProcess {
  child: ChildProcess;
  /** Resolves with the value the worker's main returned; rejects when it failed or was killed. */
  result: Promise<unknown>;
  /** Everything the worker printed to stdout so far (a worker can print markers such as "ready"). */
  stdout(): string;
  /** Everything the worker printed to stderr so far. */
  stderr(): string;
}

/**
 * Starts `script` (a path like `test/locks/critical-section.worker.ts`) as a separate Node process on its
 * compiled copy, with DATABASE_URL = `url` and the worker's index and `input` in its environment.
 */
export function spawnWorker(script: string, url: string, input: unknown, index = 0): WorkerProcess {
  const compiled = join(process.cwd(), '.build', relative(process.cwd(), script).replace(/\.ts$/, '.js'));
  const child = spawn(process.execPath, [compiled], {
    env: { ...process.env, DATABASE_URL: url, TXLOCK_WORKER_INDEX: String(index), TXLOCK_WORKER_INPUT: JSON.stringify(input ?? null) },
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

/** Runs `count` copies of a worker script at once and returns their results in index order. */
export async function runWorkers<T>(script: string, url: string, count: number, input?: unknown): Promise<T[]> {
  const workers = Array.from({ length: count }, (_, i) => spawnWorker(script, url, input, i));
  return (await Promise.all(workers.map((w) => w.result))) as T[];
}

/**
 * The body of a worker script: reads its input, runs `main`, prints the result for spawnWorker and
 * exits. Any error exits non-zero with the stack on stderr.
 */
export function workerMain<I, O>(main: (input: I, context: { url: string; index: number }) => Promise<O>): void {
  const url = process.env.DATABASE_URL!;
  const index = Number(process.env.TXLOCK_WORKER_INDEX ?? 0);
  const input = JSON.parse(process.env.TXLOCK_WORKER_INPUT ?? 'null') as I;
  main(input, { url, index }).then(
    (output) => {
      process.stdout.write(`${RESULT_MARK}${JSON.stringify(output ?? null)}\n`, () => process.exit(0));
    },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`, () => process.exit(1));
    },
  );
}
