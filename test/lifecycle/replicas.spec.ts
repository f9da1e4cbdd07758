import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { request as httpRequest } from 'node:http';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/gate.js';
import { spawnWorker, type WorkerProcess } from '../support/processes.js';
import type { ShutdownReplicaInput } from './replica.worker.js';

const WORKER = 'test/lifecycle/replica.worker.ts';

// Resolves with how the worker ended (the signal that ended it, or its exit code).
const ending = (worker: WorkerProcess): Promise<string> =>
  worker.child.exitCode !== null || worker.child.signalCode !== null
    ? Promise.resolve(worker.child.signalCode ?? `exit ${worker.child.exitCode}`)
    : new Promise((resolve) => worker.child.once('exit', (code, signal) => resolve(signal ?? `exit ${code}`)));

/** How one HTTP attempt ended. */
type Outcome = 'succeeded' | 'refused' | 'not connected' | 'reset' | 'failed';

// One POST on a connection of its own (as a load balancer opening one per request would), classified.
function post(port: number, path: string, requestId: string): Promise<{ outcome: Outcome; detail?: string }> {
  return new Promise((resolve) => {
    const headers = { connection: 'close', 'x-request-id': requestId };
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'POST', agent: false, headers }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => {
        if (res.statusCode! >= 200 && res.statusCode! < 300) return resolve({ outcome: 'succeeded' });
        const refused = res.statusCode === 503 && res.headers['retry-after'] === '1' && (JSON.parse(body) as { reason?: string }).reason === 'shutting-down';
        resolve(refused ? { outcome: 'refused' } : { outcome: 'failed', detail: `${res.statusCode} ${body}` });
      });
      res.on('error', (error) => resolve({ outcome: 'failed', detail: `response: ${error.message}` }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      // Refused by the kernel: no process listened. Reset before any answer: accepted, never read by the app.
      if (error.code === 'ECONNREFUSED') resolve({ outcome: 'not connected' });
      else if (error.code === 'ECONNRESET') resolve({ outcome: 'reset' });
      else resolve({ outcome: 'failed', detail: error.message });
    });
    req.end();
  });
}

// Two replica processes of one app on one database, stopped with SIGTERM as Kubernetes does in a rolling deploy.
describe('shutdown: rolling deploys with two replica processes', () => {
  let db: TestDatabase;
  let observer: pg.Pool;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    observer = new pg.Pool({ connectionString: db.url, max: 2 });
    await observer.query(`CREATE TABLE job_runs (id serial PRIMARY KEY, pid int NOT NULL, entered timestamptz NOT NULL, exited timestamptz, stopped boolean)`);
    await observer.query('CREATE TABLE ledger (request_id text PRIMARY KEY, pid int NOT NULL)');
  });
  afterEach(() => {
    for (const worker of workers.splice(0)) if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGKILL');
  });
  afterAll(async () => {
    await observer.end();
    await db.drop();
  });

  const start = async (input: ShutdownReplicaInput): Promise<{ worker: WorkerProcess; port: number }> => {
    const worker = spawnWorker(WORKER, db.url, input, workers.length);
    worker.result.catch(() => undefined); // stopped by a signal on purpose: how it ended is read from its exit
    workers.push(worker);
    await eventually(async () => {
      if (worker.child.exitCode !== null) throw new Error(`replica exited: ${worker.stderr()}`);
      return /listening/.test(worker.stdout());
    }, 30_000);
    return { worker, port: Number(/listening (\d+)/.exec(worker.stdout())?.[1]) };
  };

  it('SIGTERM mid-job: the other replica runs the @ScheduledLock job within 2 s, never both at once', async () => {
    const replicas = [await start({ mode: 'scheduled' }), await start({ mode: 'scheduled' })];
    await eventually(async () => (await observer.query('SELECT 1 FROM job_runs WHERE exited IS NULL')).rowCount === 1, 15_000);
    const [running] = (await observer.query<{ id: number; pid: number }>('SELECT id, pid FROM job_runs WHERE exited IS NULL')).rows;
    const victim = replicas.find((replica) => replica.worker.child.pid === running!.pid)!;
    const survivor = replicas.find((replica) => replica !== victim)!;
    await new Promise((resolve) => setTimeout(resolve, 300)); // mid-job: it runs for 30 s unless stopped

    const [{ sent }] = (await observer.query<{ sent: Date }>('SELECT clock_timestamp() AS sent')).rows;
    victim.worker.child.kill('SIGTERM');
    await eventually(async () => (await observer.query('SELECT 1 FROM job_runs WHERE pid = $1', [survivor.worker.child.pid])).rowCount === 1, 10_000);
    expect(await ending(victim.worker)).toBe('SIGTERM');

    const runs = (
      await observer.query<{ pid: number; entered: Date; exited: Date | null; stopped: boolean | null; takeover_ms: number; after_sigterm_ms: number }>(
        `SELECT pid, entered, exited, stopped,
                extract(epoch FROM entered - lag(exited) OVER (ORDER BY entered)) * 1000 AS takeover_ms,
                extract(epoch FROM entered - $1::timestamptz) * 1000 AS after_sigterm_ms
           FROM job_runs ORDER BY entered`,
        [sent],
      )
    ).rows;
    const overlaps = (
      await observer.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM job_runs a JOIN job_runs b ON a.id < b.id
          AND a.entered < coalesce(b.exited, 'infinity') AND b.entered < coalesce(a.exited, 'infinity')`,
      )
    ).rows[0]!.n;
    const [first, second] = runs;
    console.log(
      `[shutdown] @ScheduledLock takeover after SIGTERM: the stopped run left after ${(first!.exited!.getTime() - sent.getTime()).toFixed(0)} ms, ` +
        `the other replica entered ${Number(second!.after_sigterm_ms).toFixed(0)} ms after the SIGTERM ` +
        `(${Number(second!.takeover_ms).toFixed(0)} ms after the first run left, database clock); overlapping runs: ${overlaps}`,
    );
    expect(runs).toHaveLength(2);
    expect(first).toMatchObject({ pid: victim.worker.child.pid, stopped: true });
    expect(second!.pid).toBe(survivor.worker.child.pid);
    expect(Number(second!.after_sigterm_ms)).toBeLessThan(2_000);
    expect(Number(second!.takeover_ms)).toBeGreaterThan(0);
    expect(overlaps).toBe(0);
  });

  it('restarts each replica in turn under HTTP load: every request succeeded or was refused before doing any work, none lost', async () => {
    const live = new Map<WorkerProcess, number>();
    for (let i = 0; i < 2; i++) {
      const replica = await start({ mode: 'http' });
      live.set(replica.worker, replica.port);
    }
    const counts: Record<Outcome, number> = { succeeded: 0, refused: 0, 'not connected': 0, reset: 0, failed: 0 };
    const succeeded = { increment: 0, transfer: 0 };
    const succeededTransfers: string[] = [];
    const failures: string[] = [];
    let sent = 0;
    let loading = true;
    // Eight clients, each sending one request after another to a replica picked at random among the ones the load
    // balancer still lists: a stopped replica stays listed until its process is gone, as endpoints lag in Kubernetes.
    const clients = Array.from({ length: 8 }, async (_, client) => {
      for (let n = 0; loading; n++) {
        const ports = [...live.values()];
        if (ports.length === 0) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          continue;
        }
        const path = (client + n) % 2 === 0 ? 'increment' : 'transfer';
        const requestId = `${client}-${n}`;
        sent++;
        const { outcome, detail } = await post(ports[Math.floor(Math.random() * ports.length)]!, `/${path}`, requestId);
        counts[outcome]++;
        if (outcome === 'succeeded') succeeded[path]++;
        if (outcome === 'succeeded' && path === 'transfer') succeededTransfers.push(requestId);
        if (outcome === 'failed') failures.push(detail!);
      }
    });
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    await pause(1_000);
    for (const old of [...live.keys()]) {
      const before = { ...counts };
      old.child.kill('SIGTERM');
      const ended = ending(old);
      await ended;
      live.delete(old);
      expect(await ended).toBe('SIGTERM');
      const replacement = await start({ mode: 'http' });
      live.set(replacement.worker, replacement.port);
      console.log(`[shutdown] replica stopped and replaced: ${counts.refused - before.refused} request(s) refused with 503 meanwhile`);
      await pause(1_000);
    }
    loading = false;
    await Promise.all(clients);

    const counter = async (key: string) => Number((await observer.query<{ v: string }>('SELECT coalesce(sum(value), 0)::text AS v FROM txlock_counters WHERE key = $1', [key])).rows[0]!.v);
    const [hits, transfers, ledger] = [await counter('hits'), await counter('transfers'), Number((await observer.query<{ n: string }>('SELECT count(*) AS n FROM ledger')).rows[0]!.n)];
    const lost = Math.abs(hits - succeeded.increment) + Math.abs(transfers - succeeded.transfer) + Math.abs(ledger - succeeded.transfer);
    console.log(
      `[shutdown] rolling restart of 2 replicas under load: ${sent} requests sent, ${counts.succeeded} succeeded ` +
        `(${succeeded.increment} increments, ${succeeded.transfer} transactions), ${counts.refused} refused with 503, ` +
        `${counts['not connected']} not connected (replica gone), ${counts.reset} reset before any answer, ${counts.failed} failed otherwise, ` +
        `${lost} lost (counter hits ${hits}, counter transfers ${transfers}, ledger rows ${ledger})`,
    );
    expect(failures).toEqual([]);
    expect(hits).toBe(succeeded.increment);
    expect(transfers).toBe(succeeded.transfer);
    expect(ledger).toBe(succeeded.transfer);
    // Request by request: every transaction that answered success is in, and no other (a 503 did nothing).
    const ledgerIds = (await observer.query<{ request_id: string }>('SELECT request_id FROM ledger')).rows.map((row) => row.request_id);
    expect(ledgerIds.sort()).toEqual(succeededTransfers.sort());
    expect(lost).toBe(0);
    expect(counts.succeeded).toBeGreaterThan(100);
  });
});
