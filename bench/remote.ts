import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RoundTripLog } from '../test/support/round-trips.js';
import { runCallers, sample, type RoundStats, type Variant } from './harness.js';
import { mergeFrames, withCpuProfile, type FrameStat } from './profile.js';

// Bench worker processes stay up for a whole scenario and run rounds on command, so several processes can
// run one round together (a hot key across replicas), and a peer that patches TypeORM globally
// (typeorm-transactional) cannot touch the variants measured in the bench's own process.

type Request =
  | { type: 'round'; op: string; callers: number; ms: number; startAt: number; profileFile?: string }
  | { type: 'call'; name: string; arg: unknown }
  | { type: 'close' };
type Command = Request & { id: number };

type Reply = { type: 'ready' } | { type: 'failed'; error: string } | { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

/** What a worker script offers: named operations to time, and named calls the bench may make between rounds. */
export interface WorkerRig {
  ops: Record<string, (caller: number) => Promise<unknown>>;
  /** Counts the round trips of the operations. */
  log?: RoundTripLog;
  calls?: Record<string, (arg: unknown) => unknown>;
  close(): Promise<void>;
}

// Latencies sent back per worker and round: plenty for p50/p99.
const MAX_LATENCIES = 20_000;

/** The body of a worker script: builds its rig from the database URL and its input, then serves commands. */
export function serveRounds<I>(setup: (url: string, input: I) => Promise<WorkerRig>): void {
  const send = (reply: Reply) => process.send!(reply);
  // A bench that died must not leave its workers (and their connections) behind.
  process.on('disconnect', () => process.exit(1));
  const input = JSON.parse(process.env.TXLOCK_BENCH_INPUT ?? 'null') as I;
  setup(process.env.TXLOCK_BENCH_URL!, input).then(
    (rig) => {
      process.on('message', (command: Command) => {
        execute(rig, command).then(
          (value) => send({ id: command.id, ok: true, value }),
          (error: unknown) => send({ id: command.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
        );
      });
      send({ type: 'ready' });
    },
    (error: unknown) => send({ type: 'failed', error: error instanceof Error ? error.message : String(error) }),
  );
}

async function execute(rig: WorkerRig, command: Command): Promise<unknown> {
  if (command.type === 'close') {
    await rig.close();
    setImmediate(() => process.exit(0));
    return null;
  }
  if (command.type === 'call') return rig.calls![command.name]!(command.arg);
  const op = rig.ops[command.op];
  if (!op) throw new Error(`no operation ${command.op}`);
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, command.startAt - Date.now())));
  const run = async () => {
    rig.log?.reset();
    const stats = await runCallers(command.ms, command.callers, op);
    return { ...stats, roundTrips: rig.log ? rig.log.count : stats.ops, latenciesMs: sample(stats.latenciesMs, MAX_LATENCIES) };
  };
  if (!command.profileFile) return run();
  const { result, profile } = await withCpuProfile(command.profileFile, run);
  return { ...result, profile };
}

/** A running worker process (bench/workers/<name>.ts, compiled). */
export class BenchWorker {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (reply: Reply) => {
      if (!('id' in reply)) return;
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (reply.ok) waiter?.resolve(reply.value);
      else waiter?.reject(new Error(reply.error));
    });
    child.on('exit', (code) => {
      for (const waiter of this.pending.values()) waiter.reject(new Error(`bench worker exited with ${code}`));
      this.pending.clear();
    });
  }

  /** Starts the worker and waits until its rig is built; rejects with the worker's own error when it cannot be. */
  static async start(name: string, url: string, input: unknown): Promise<BenchWorker> {
    const script = fileURLToPath(new URL(`./workers/${name}.js`, import.meta.url));
    const child = fork(script, [], {
      env: { ...process.env, TXLOCK_BENCH_URL: url, TXLOCK_BENCH_INPUT: JSON.stringify(input ?? null) },
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`bench worker ${name} exited with ${code} before it was ready`)));
      child.once('message', (reply: Reply) => {
        if ('type' in reply && reply.type === 'ready') resolve();
        else {
          child.kill();
          reject(new Error('error' in reply ? reply.error : `bench worker ${name} did not start`));
        }
      });
    });
    child.removeAllListeners('exit');
    return new BenchWorker(child);
  }

  round(op: string, callers: number, ms: number, startAt: number, profileFile?: string): Promise<RoundStats & { profile?: FrameStat[] }> {
    return this.request({ type: 'round', op, callers, ms, startAt, profileFile }) as Promise<RoundStats & { profile?: FrameStat[] }>;
  }

  call<T>(name: string, arg?: unknown): Promise<T> {
    return this.request({ type: 'call', name, arg }) as Promise<T>;
  }

  async close(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    await this.request({ type: 'close' }).catch(() => undefined);
    await exited;
  }

  private request(command: Request): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ ...command, id });
    });
  }
}

/** Options of remoteVariant(). */
export interface RemoteVariantOptions extends Pick<Variant, 'scenario' | 'variant' | 'beforeRound' | 'afterRound' | 'note'> {
  workers: BenchWorker[];
  op: string;
  /** Concurrent callers in each worker. */
  callersEach: number;
}

// Time for the command to reach every worker, so they start the round together.
const START_DELAY_MS = 25;

/** A variant whose callers run in worker processes, all starting each round at the same moment. */
export function remoteVariant(options: RemoteVariantOptions): Variant {
  const { workers, op, callersEach } = options;
  return {
    scenario: options.scenario,
    variant: options.variant,
    callers: callersEach * workers.length,
    remote: true,
    beforeRound: options.beforeRound,
    afterRound: options.afterRound,
    note: options.note,
    async round(ms, roundOptions = {}) {
      const startAt = Date.now() + START_DELAY_MS;
      const each = await Promise.all(
        workers.map((worker, i) => worker.round(op, callersEach, ms, startAt, roundOptions.profileFile?.replace(/\.cpuprofile$/, `.p${i}.cpuprofile`))),
      );
      const profiles = each.flatMap((stats) => stats.profile ?? []);
      return {
        ops: each.reduce((sum, s) => sum + s.ops, 0),
        wallMs: Math.max(...each.map((s) => s.wallMs)),
        cpuUs: each.reduce((sum, s) => sum + s.cpuUs, 0),
        roundTrips: each.reduce((sum, s) => sum + s.roundTrips, 0),
        latenciesMs: each.flatMap((s) => s.latenciesMs),
        profile: profiles.length ? mergeFrames(profiles) : undefined,
      };
    },
  };
}
