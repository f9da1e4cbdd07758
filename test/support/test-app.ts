import { afterAll, beforeAll } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { createTestDatabase, type TestDatabase } from './database.js';
import { createTestApp, type TestAppOptions } from './nest-app.js';

/** A test file's own database and the Nest app on it; read the fields inside tests and hooks. */
export interface TestApp {
  readonly db: TestDatabase;
  readonly app: INestApplication;
  readonly dataSource: DataSource;
  get<T>(type: abstract new (...args: never[]) => T): T;
}

/**
 * For the enclosing describe block: a fresh database and an app on it (createTestApp) made in beforeAll,
 * closed and dropped in afterAll. Hooks declared after this call see both ready.
 */
export function useTestApp(options: Omit<TestAppOptions, 'url'> = {}): TestApp {
  let db: TestDatabase | undefined;
  let app: INestApplication | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ ...options, url: db.url });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useTestApp(): read the app inside tests or hooks, once beforeAll has run');
    return value;
  };
  return {
    get db() {
      return ready(db);
    },
    get app() {
      return ready(app);
    },
    get dataSource() {
      return ready(app).get(DataSource);
    },
    get: (type) => ready(app).get(type),
  };
}
