import type { DemoContext } from '../context.js';
import { succeeded } from '../http.js';
import { countRow, SAFE, type Row } from '../row.js';

const USERS = 200;

/** 200 users like one post at once: likes_count must end at 200 (seed 004's drifting likes counter). */
export async function likesScenario({ http, db }: DemoContext): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [path, suffix] of [['naive', '/unsafe'], [`${SAFE} incrementColumn`, '']] as const) {
    const post = await http.expectOk<{ id: number }>({ method: 'POST', path: '/posts', body: { title: `demo (${path})` } });
    const { responses, ms } = await http.burst(USERS, (i) => ({ method: 'PUT', path: `/posts/${post.id}/likes/user-${i}${suffix}` }));
    const { rows: [counts] } = await db.query<{ likes_count: number }>('SELECT likes_count FROM posts WHERE id = $1', [post.id]);
    rows.push(
      countRow({
        feature: 'likes counter',
        path,
        requests: USERS,
        ms,
        expected: USERS,
        observed: counts!.likes_count,
        failed: USERS - succeeded(responses),
        words: { less: 'lost', more: 'extra' },
      }),
    );
  }
  return rows;
}
