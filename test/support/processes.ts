import { join, relative } from 'node:path';
import { spawnWorker as spawnCompiled, type WorkerProcess } from '../../lib/testing/worker-processes.js';

export { workerMain, type WorkerProcess } from '../../lib/testing/worker-processes.js';

/**
 * Starts `script` (a path like `test/locks/critical-section.worker.ts`) as a separate Node process on its
 * compiled copy in .build/ (global setup compiles the workers), through the testing kit's spawnWorker().
 */
export function spawnWorker(script: string, url: string, input: unknown, index = 0): WorkerProcess {
  const compiled = join(process.cwd(), '.build', relative(process.cwd(), script).replace(/\.ts$/, '.js'));
  return spawnCompiled(compiled, { url, input, index });
}

/** Runs `count` copies of a worker script at once and returns their results in index order. */
export async function runWorkers<T>(script: string, url: string, count: number, input?: unknown): Promise<T[]> {
  const workers = Array.from({ length: count }, (_, i) => spawnWorker(script, url, input, i));
  return (await Promise.all(workers.map((w) => w.result))) as T[];
}
