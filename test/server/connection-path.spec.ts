import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { LockService, SessionLockPoolerError, TxLockModule } from '../../lib/index.js';
import { isDirectConnection } from '../../lib/server/connection-path.js';
import { identifyServer } from '../../lib/server/identify-server.js';
import { createTestDatabase, directUrl, type TestDatabase } from '../support/database.js';
import { javaScriptPg, NATIVE_MISSING, nativePg } from '../support/native-client.js';
import { TcpProxy } from '../support/tcp-proxy.js';

// Whether a connection reaches the backend it was opened on, for both of pg's clients. `pooler` plays a pooler at
// connection start (its own backend key, as PgBouncer, pgcat and Supavisor give) while passing every statement to
// the real backend; `tcp` is a plain TCP-level proxy, which passes the key on and is no pooler.
describe('the connection path (isDirectConnection), with pg JavaScript and native clients', () => {
  let db: TestDatabase;
  let direct: string;
  let tcp: TcpProxy;
  let pooler: TcpProxy;

  beforeAll(async () => {
    db = await createTestDatabase();
    direct = directUrl(db.url);
    tcp = await TcpProxy.start(direct);
    pooler = await TcpProxy.start(direct, { ownBackendKey: true });
  });
  afterAll(async () => {
    await tcp?.close();
    await pooler?.close();
    await db?.drop();
  });

  const clients = [
    { kind: 'JavaScript', driver: javaScriptPg, skip: '' },
    { kind: 'native (pg-native)', driver: nativePg, skip: NATIVE_MISSING },
  ];

  for (const { kind, driver, skip } of clients) {
    (driver ? it : it.skip)(`${kind} client: direct and through a TCP proxy it is direct; behind a proxy with its own backend key it is not${skip}`, async () => {
      const answer = async (url: string) => {
        const client = new driver!.Client({ connectionString: url });
        await client.connect();
        try {
          return await isDirectConnection(client, async () => (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
        } finally {
          await client.end();
        }
      };
      expect({ direct: await answer(direct), tcp: await answer(tcp.url), pooler: await answer(pooler.url) }).toEqual({ direct: true, tcp: true, pooler: false });
    });
  }

  // r25: with pg-native installed, TypeORM runs every DataSource on the native client, which has no `processID`; every
  // session-scope lock on a direct connection was refused as "behind a pooler".
  for (const { kind, driver, skip } of clients) {
    describe(`an app on the ${kind} client`, () => {
      let apps: INestApplication[] = [];
      const boot = async (url: string) => {
        const moduleRef = await Test.createTestingModule({
          imports: [TypeOrmModule.forRoot({ type: 'postgres', url, driver, extra: { max: 2 } }), TxLockModule.forRoot()],
        }).compile();
        const app = moduleRef.createNestApplication({ logger: false });
        apps.push(app);
        await app.init();
        const dataSource = app.get(DataSource);
        expect((dataSource.driver as unknown as { postgres: unknown }).postgres).toBe(driver);
        const locks = app.get(LockService);
        const session = await locks.withAdvisoryLock('r25', () => 'ran', { scope: 'session' }).catch((error: unknown) => error);
        return { session, proxied: (await identifyServer(dataSource)).proxied };
      };
      afterAll(async () => {
        for (const app of apps) await app.close();
        apps = [];
      });

      (driver ? it : it.skip)(`runs session-scope locks on a direct connection, and its bootstrap check sees no pooler (r25)${skip}`, async () => {
        expect(await boot(direct)).toEqual({ session: 'ran', proxied: false });
      });

      (driver ? it : it.skip)(`refuses session-scope locks behind a proxy that gives its own backend key, and its bootstrap check sees it${skip}`, async () => {
        const { session, proxied } = await boot(pooler.url);
        expect(session).toBeInstanceOf(SessionLockPoolerError);
        expect(session).toMatchObject({ reason: 'detected' });
        expect(proxied).toBe(true);
      });
    });
  }

  // The check connection of a native client goes where the client goes: a target it cannot reach answers "not shown
  // direct" (the session lock is refused) and is asked again next time instead of being remembered.
  (nativePg ? it : it.skip)(`native client: a check connection that fails is not remembered${NATIVE_MISSING}`, async () => {
    const flaky = await TcpProxy.start(direct);
    const ask = async () => {
      const client = new nativePg!.Client({ connectionString: flaky.url });
      await client.connect();
      client.on('error', () => undefined);
      flaky.setDown(true); // this connection dropped, and new ones refused: the check connection's
      try {
        return await isDirectConnection(client, async () => 0);
      } finally {
        flaky.setDown(false);
        await client.end().catch(() => undefined);
      }
    };
    try {
      expect(await ask()).toBe(false);
      const again = new nativePg!.Client({ connectionString: flaky.url });
      await again.connect();
      try {
        expect(await isDirectConnection(again, async () => 0)).toBe(true);
      } finally {
        await again.end();
      }
    } finally {
      await flaky.close();
    }
  });
});
