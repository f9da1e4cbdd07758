import { fork, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/**
 * `--rtt <ms>`: a relay process between the bench and PostgreSQL (workers/relay.worker.ts) that holds every
 * chunk half of `rttMs` each way. Its CPU is the machine's too: `cpuUs()` reads it, every thread, from /proc.
 */
export class Relay {
  private constructor(
    private readonly child: ChildProcess,
    /** The database URL through the relay. */
    readonly url: string,
    readonly rttMs: number,
  ) {}

  /** Starts the relay in front of the server of `url` and returns the relay with `url` rewritten to go through it. */
  static async start(url: string, rttMs: number): Promise<Relay> {
    const parsed = new URL(url);
    const script = fileURLToPath(new URL('./workers/relay.worker.js', import.meta.url));
    const child = fork(script, [], {
      env: { ...process.env, TXLOCK_RELAY_HOST: parsed.hostname || '127.0.0.1', TXLOCK_RELAY_PORT: parsed.port || '5432', TXLOCK_RELAY_HOLD_MS: String(rttMs / 2) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`the relay exited with ${code} before it was ready`)));
      child.once('message', (message: { port: number }) => resolve(message.port));
    });
    child.removeAllListeners('exit');
    parsed.hostname = '127.0.0.1';
    parsed.port = String(port);
    return new Relay(child, parsed.toString(), rttMs);
  }

  /** The relay process's CPU time so far (all its threads), µs; undefined where /proc cannot say. */
  async cpuUs(): Promise<number | undefined> {
    const tasks = await readdir(`/proc/${this.child.pid}/task`).catch(() => undefined);
    if (!tasks) return undefined;
    const times = await Promise.all(tasks.map((task) => readFile(`/proc/${this.child.pid}/task/${task}/schedstat`, 'utf8').catch(() => '0')));
    return times.reduce((sum, text) => sum + Number(text.split(' ')[0]) / 1000, 0);
  }

  /** Chunks passed on so far, and how long they were held on average (ms): the delay actually added each way. */
  stats(): Promise<{ relayed: number; meanHoldMs: number }> {
    return new Promise((resolve) => {
      this.child.once('message', (message: { relayed: number; meanHoldMs: number }) => resolve(message));
      this.child.send({ type: 'stats' });
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.disconnect();
    await exited;
  }
}
