import type pg from 'pg';
import type { DemoClient } from './http.js';

/** What every scenario gets: the HTTP client over the replicas, and SQL access to check the outcome. */
export interface DemoContext {
  http: DemoClient;
  /** Ground truth comes from the database, never from what the endpoints say about themselves. */
  db: pg.Pool;
  /** The database the replicas run on, for a scenario that starts (and kills) a replica of its own. */
  databaseUrl: string;
}
