import { OutboxService } from '../outbox/outbox.service.js';
import { getTxLockToken } from '../txlock-tokens.js';
import type { AppLike, TestHooks } from './test-transaction.js';

/** An event a test published, as captureOutbox() saw it. */
export interface CapturedOutboxEvent {
  /** The event's id in the outbox table. */
  id: string;
  /** The topic it was published on. */
  topic: string;
  /** Its ordering key, or null. */
  key: string | null;
  /** The payload, as publish() was given it. */
  payload: unknown;
}

/** What a test published on the outbox, and delivery on demand. */
export interface OutboxCapture {
  /** The events published since the capture began, in the order they were published (rolled back or not). */
  readonly events: readonly CapturedOutboxEvent[];
  /**
   * Delivers the captured events that are due and not delivered yet to their `@OnOutboxEvent()` handlers, as the relay
   * would (each round in a transaction that also marks them delivered: under useRollbackPerTest(), a savepoint of the
   * test's), then the events those handlers published, until none is left. Returns how many were delivered. Events
   * of a transaction that rolled back do not exist, and are not delivered.
   */
  deliver(): Promise<number>;
  /** Stops capturing. */
  stop(): void;
}

/** Which registration's outbox to capture. */
export interface OutboxCaptureOptions {
  /** The name of the DataSource (its TxLockModule registration). Default: the default one. */
  dataSource?: string;
}

// Handlers that publish on their own topics would never end: a test that needs more rounds is asking for a loop.
const MAX_ROUNDS = 100;

/**
 * Django's `captureOnCommitCallbacks()` for the outbox: records what the code under test publishes, and delivers it
 * when the test says so. Under useRollbackPerTest() the relay does not run (a test's events are never committed, so no
 * relay could see them): `deliver()` runs their handlers in the test's transaction, rolled back with it.
 *
 * @example
 * const outbox = captureOutbox(app);
 * await request(app.getHttpServer()).put('/posts/1/likes/alice').expect(200);
 * expect(outbox.events).toMatchObject([{ topic: 'post.liked', payload: { postId: 1, userId: 'alice' } }]);
 * await outbox.deliver();
 * await request(app.getHttpServer()).get('/notifications').expect(200, [...]);
 */
export function captureOutbox(app: AppLike, options: OutboxCaptureOptions = {}): OutboxCapture {
  const context = typeof app === 'function' ? app() : app;
  const outbox = context.get<OutboxService>(getTxLockToken(OutboxService, options.dataSource), { strict: false });
  const events: CapturedOutboxEvent[] = [];
  const stop = outbox.watch({ published: (event) => events.push(event) });
  return {
    events,
    stop,
    async deliver() {
      let delivered = 0;
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const outcome = await outbox.delivery.deliver(events.map((event) => event.id));
        delivered += outcome.delivered;
        if (outcome.claimed === 0) return delivered;
      }
      throw new Error(`captureOutbox().deliver(): still delivering after ${MAX_ROUNDS} rounds; do handlers publish events that publish events without end?`);
    },
  };
}

/**
 * captureOutbox() for every test of a describe block (jest and vitest globals, or `hooks`): a fresh capture before
 * each test, stopped after it. Read `events` and call `deliver()` inside tests.
 *
 * @example
 * describe('likes', () => {
 *   useRollbackPerTest(() => app);
 *   const outbox = useOutboxCapture(() => app);
 *   it('notifies the author', async () => { ...; await outbox.deliver(); ... });
 * });
 */
export function useOutboxCapture(app: AppLike, options: OutboxCaptureOptions & { hooks?: TestHooks } = {}): OutboxCapture {
  const hooks = options.hooks ?? (globalThis as Partial<TestHooks>);
  if (typeof hooks.beforeEach !== 'function' || typeof hooks.afterEach !== 'function') {
    throw new Error('useOutboxCapture() found no global beforeEach/afterEach: pass them, useOutboxCapture(app, { hooks: { beforeEach, afterEach } }).');
  }
  let current: OutboxCapture | undefined;
  const capture = (): OutboxCapture => {
    if (!current) throw new Error('useOutboxCapture(): use the capture inside a test, once its beforeEach has run.');
    return current;
  };
  hooks.beforeEach(async () => {
    current = captureOutbox(app, options);
  });
  hooks.afterEach(async () => {
    current?.stop();
    current = undefined;
  });
  return {
    get events() {
      return capture().events;
    },
    deliver: () => capture().deliver(),
    stop: () => capture().stop(),
  };
}
