import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** A copy of the sample app running as its own OS process. */
export interface Replica {
  name: string;
  url: string;
  stop(): Promise<void>;
  /** kill -9: the process ends at once, in the middle of whatever it was doing. */
  kill(): Promise<void>;
}

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const STARTUP_TIMEOUT_MS = 30_000;
// main.ts prints this line once it listens; PORT=0 lets each replica take a free port.
const LISTENING = /listening on (http:\/\/\S+)/;

/**
 * Starts `count` replicas on one database, one after the other: the first creates the tables
 * (synchronize), so the next ones find them instead of racing to create them.
 */
export async function startReplicas(databaseUrl: string, count: number): Promise<Replica[]> {
  const replicas: Replica[] = [];
  try {
    for (let i = 0; i < count; i++) replicas.push(await startReplica(databaseUrl, `replica-${String.fromCharCode(97 + i)}`));
  } catch (error) {
    await Promise.all(replicas.map((replica) => replica.stop()));
    throw error;
  }
  return replicas;
}

/** Starts one replica named `name` on the database. */
export function startReplica(databaseUrl: string, name: string): Promise<Replica> {
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: '0', REPLICA: name, SAMPLE_QUIET: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise<Replica>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not start within ${STARTUP_TIMEOUT_MS} ms`)), STARTUP_TIMEOUT_MS);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${error.message}\n${output}`));
    };
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = LISTENING.exec(output);
      if (!match) return;
      clearTimeout(timer);
      resolve({ name, url: match[1]!, stop: () => stopProcess(child), kill: () => stopProcess(child, 'SIGKILL') });
    });
    child.once('exit', (code) => fail(new Error(`${name} exited with ${code} before listening`)));
  });
}

function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}
