import { createServer, connect, type Socket } from 'node:net';
import { Worker } from 'node:worker_threads';

// The relay of `npm run bench -- --rtt <ms>` (bench/relay.ts starts it): a process of its own between Node and
// PostgreSQL that holds every chunk, in either direction, for half the round trip before passing it on, so each
// round trip costs `rtt` more, as with a database on another host. Node's timers count whole milliseconds, so a
// thread of this process sleeps until the next chunk is due (Atomics.wait takes fractions of a millisecond) and
// wakes the event loop then; the lateness of that wake-up is measured and aimed ahead of, so the mean hold is
// the one asked for. Everything it does is CPU of this process, which the bench reads from /proc and reports.

const target = { host: process.env.TXLOCK_RELAY_HOST!, port: Number(process.env.TXLOCK_RELAY_PORT) };
const holdMs = Number(process.env.TXLOCK_RELAY_HOLD_MS);

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

interface Held {
  due: number;
  received: number;
  to: Socket;
  chunk: Buffer;
}

// One queue for both directions: every chunk is held equally long, so they fall due in the order they came.
const queue: Held[] = [];
let head = 0;
const shared = new SharedArrayBuffer(16);
const seq = new Int32Array(shared, 0, 1);
const nextDue = new Float64Array(shared, 8, 1);
nextDue[0] = Infinity;
// How late the wake-up tends to be (ms): the sleeper aims this much ahead of the due time.
let lateness = 0.05;
let relayed = 0;
let heldTotalMs = 0;

const sleeper = new Worker(
  `
  const { parentPort, workerData } = require('node:worker_threads');
  const seq = new Int32Array(workerData, 0, 1);
  const nextDue = new Float64Array(workerData, 8, 1);
  const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
  let seen = Atomics.load(seq, 0);
  for (;;) {
    const due = nextDue[0];
    if (due === Infinity) { Atomics.wait(seq, 0, seen); seen = Atomics.load(seq, 0); continue; }
    const wait = due - nowMs();
    if (wait > 0) {
      const outcome = Atomics.wait(seq, 0, seen, wait);
      seen = Atomics.load(seq, 0);
      if (outcome !== 'timed-out') continue; // a new due time: look again
    }
    parentPort.postMessage(0);
    Atomics.wait(seq, 0, seen); // until the event loop has passed the chunks on and set the next due time
    seen = Atomics.load(seq, 0);
  }
  `,
  { eval: true, workerData: shared },
);
sleeper.unref();

function schedule(): void {
  const next = queue[head];
  nextDue[0] = next ? next.due - lateness : Infinity;
  Atomics.add(seq, 0, 1);
  Atomics.notify(seq, 0);
}

sleeper.on('message', () => {
  const now = nowMs();
  let late = 0;
  let count = 0;
  while (head < queue.length && queue[head]!.due - lateness <= now) {
    const held = queue[head]!;
    queue[head++] = undefined as unknown as Held;
    if (!held.to.destroyed) held.to.write(held.chunk);
    late += now - held.due;
    count++;
    relayed++;
    heldTotalMs += now - held.received;
  }
  if (head > 1024 && head * 2 > queue.length) {
    queue.splice(0, head);
    head = 0;
  }
  // Aim ahead by the observed lateness (kept between 0 and the hold itself).
  if (count) lateness = Math.min(holdMs, Math.max(0, lateness + 0.1 * (late / count)));
  schedule();
});

function hold(to: Socket, chunk: Buffer): void {
  const received = nowMs();
  queue.push({ due: received + holdMs, received, to, chunk });
  if (queue.length - head === 1) schedule();
}

const server = createServer({ noDelay: true }, (client) => {
  const upstream = connect({ ...target, noDelay: true });
  client.on('data', (chunk) => hold(upstream, chunk));
  upstream.on('data', (chunk) => hold(client, chunk));
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('close', end);
  upstream.on('close', end);
  client.on('error', end);
  upstream.on('error', end);
});

process.on('message', (message: { type: string }) => {
  if (message.type === 'stats') process.send!({ type: 'stats', relayed, meanHoldMs: relayed ? heldTotalMs / relayed : 0 });
});
process.on('disconnect', () => process.exit(0));
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send!({ type: 'ready', port: typeof address === 'object' && address ? address.port : 0 });
});
