import type { DemoContext } from '../context.js';
import { DemoClient } from '../http.js';
import { startReplica } from '../replicas.js';
import { countRow, SAFE, type Row } from '../row.js';

const LIKES = 200;
/** The victim is killed once this share of its likes has committed. */
const KILL_AT = LIKES / 2;
/** How long the survivors get to deliver what the victim published (the outbox row waits for exactly that many). */
const SETTLE_MS = 20_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * 200 likes sent to a third replica, which is killed with SIGKILL (kill -9) halfway through: every like that committed
 * must notify the post's author once. The naive way (an afterCommit hook, in the process's memory) loses the
 * notifications of the likes that had committed but whose hook had not run; the outbox (the event committed with the
 * like) loses none: the two surviving replicas' relays deliver them.
 */
export async function notificationsScenario({ http, db, databaseUrl }: DemoContext): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [path, suffix] of [['naive afterCommit', '/after-commit'], [`${SAFE} outbox`, '']] as const) {
    const post = await http.expectOk<{ id: number }>({ method: 'POST', path: '/posts', body: { title: `notifications (${path})` } });
    const victim = await startReplica(databaseUrl, 'replica-killed');
    const started = performance.now();
    const burst = new DemoClient([victim.url]).burst(LIKES, (i) => ({ method: 'PUT', path: `/posts/${post.id}/likes/user-${i}${suffix}` }));
    while ((await count(db, 'likes', post.id)) < KILL_AT) await sleep(2);
    await victim.kill();
    await burst; // the requests in flight fail: the process is gone
    const committed = await count(db, 'likes', post.id);
    // The outbox row must be exact: give the survivors' relays time to deliver; the naive row has nothing to wait for.
    for (const deadline = Date.now() + SETTLE_MS; suffix === '' && Date.now() < deadline && (await count(db, 'notifications', post.id)) < committed; ) await sleep(50);
    if (suffix !== '') await sleep(500);
    rows.push(
      countRow({
        feature: 'notifications, kill -9 mid-burst',
        path,
        requests: LIKES,
        ms: performance.now() - started,
        expected: committed,
        observed: await count(db, 'notifications', post.id),
        failed: 0, // requests cut off by the kill are the point of the scenario; what matters is each committed like
        words: { less: 'lost', more: 'duplicated' },
      }),
    );
  }
  return rows;
}

async function count(db: DemoContext['db'], table: 'likes' | 'notifications', postId: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE post_id = $1`, [postId]);
  return rows[0]!.n;
}
