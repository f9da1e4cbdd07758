import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import type { DataSource } from 'typeorm';
import { UnsupportedServerError } from '../../lib/index.js';
import { identifyServer } from '../../lib/server/identify-server.js';
import { assertAdvisoryLocksWork, classifyServer, MAX_TESTED_POSTGRES_MAJOR, MIN_POSTGRES_MAJOR } from '../../lib/server/server-identity.js';
import { createTestDatabase, openDataSource, poolerUrl, type TestDatabase } from '../support/database.js';
import { RoundTripLog } from '../support/round-trips.js';

/**
 * version() strings as the servers print them, gathered from public sources (logs, docs, other projects' tests):
 * [what answered, version(), server_version_num or undefined when not recorded].
 */
const POSTGRESQL: [string, string, number | undefined][] = [
  ['PostgreSQL 15 on Debian (this CI machine)', 'PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit', 150020],
  ['Amazon RDS for PostgreSQL', 'PostgreSQL 16.3 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 7.3.1 20180712 (Red Hat 7.3.1-12), 64-bit', undefined],
  ['Amazon Aurora PostgreSQL (aurora_version() 16.1.0)', 'PostgreSQL 16.1 on aarch64-unknown-linux-gnu, compiled by aarch64-unknown-linux-gnu-gcc (GCC) 9.5.0, 64-bit', 160001],
  ['Google Cloud SQL', 'PostgreSQL 15.6 on x86_64-pc-linux-gnu, compiled by Debian clang version 12.0.1, 64-bit', undefined],
  ['Google AlloyDB', 'PostgreSQL 17.7 on x86_64-pc-linux-gnu, compiled by Debian clang version 12.0.1, 64-bit', undefined],
  ['Azure Database for PostgreSQL flexible server', 'PostgreSQL 16.4 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 11.4.1 20230605 (Red Hat 11.4.1-2), 64-bit', undefined],
  ['Neon', 'PostgreSQL 15.0 on x86_64-pc-linux-gnu, compiled by gcc (Debian 10.2.1-6) 10.2.1 20210110, 64-bit', undefined],
  ['Supabase', 'PostgreSQL 15.1 (Ubuntu 15.1-1.pgdg20.04+1) on x86_64-pc-linux-gnu, compiled by gcc (Ubuntu 9.4.0-1ubuntu1~20.04.1) 9.4.0, 64-bit', undefined],
  ['Citus or TimescaleDB (extensions: version() is the server\'s own; an Alpine image)', 'PostgreSQL 17.10 on x86_64-pc-linux-musl, compiled by gcc (Alpine 15.2.0) 15.2.0, 64-bit', undefined],
  ['EDB Postgres Advanced Server', 'PostgreSQL 16.4 (EnterpriseDB Advanced Server 16.4.1) on x86_64-pc-linux-gnu, compiled by gcc (GCC) 11.4.1 20231218 (Red Hat 11.4.1-3), 64-bit', undefined],
  ['PostgreSQL on Windows (MSVC builds print no platform)', 'PostgreSQL 15.8, compiled by Visual C++ build 1940, 64-bit', 150008],
  ['PostgreSQL 18 built with meson', 'PostgreSQL 18.0 on x86_64-linux, compiled by gcc-15.1.0, 64-bit', 180000],
  ['PostgreSQL 18 beta', 'PostgreSQL 18beta1 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 14.2.1, 64-bit', 180000],
];

/** [engine the error names, version(), server_version_num or undefined]. */
const REFUSED: [string, string, number | undefined][] = [
  ['CockroachDB', 'CockroachDB CCL v26.2.5 (x86_64-pc-linux-gnu, built 2026/07/28 18:56:00, go1.25.5)', 180000],
  ['CockroachDB', 'CockroachDB CCL v23.1.11 (x86_64-pc-linux-gnu, built 2023/11/13 16:39:00, go1.19.13)', 130000],
  [
    'YugabyteDB',
    'PostgreSQL 15.12-YB-2026.1.0.1-b0 on x86_64-pc-linux-gnu, compiled by clang version 21.1.1 (https://github.com/yugabyte/llvm-project.git efca861cc42178cc4c555d605b36c79d7d121cc1), 64-bit',
    150012,
  ],
  ['YugabyteDB', 'PostgreSQL 11.2-YB-2.20.1.0-b0 on x86_64-pc-linux-gnu, compiled by clang version 15.0.3, 64-bit', 110002],
  ['Amazon Redshift', 'PostgreSQL 8.0.2 on i686-pc-linux-gnu, compiled by GCC gcc (GCC) 3.4.2 20041017 (Red Hat 3.4.2-6.fc3), Redshift 1.0.12103', undefined],
  [
    'Greenplum',
    'PostgreSQL 9.4.26 (Greenplum Database 6.25.3 build commit:367edc6b4dfd909fe38fc288ade9e294d74e3f9a Open Source) on x86_64-unknown-linux-gnu, compiled by gcc (Ubuntu 7.5.0-3ubuntu1~18.04) 7.5.0, 64-bit compiled on Oct  4 2023 23:27:38',
    undefined,
  ],
  [
    'Greenplum',
    'PostgreSQL 12.12 (Greenplum Database 7.4.0 build commit:27de6dc6d00607a5630a41fd2c0ad489f40e2ad4) on x86_64-pc-linux-gnu, compiled by gcc (GCC) 8.5.0 20210514 (Red Hat 8.5.0-22), 64-bit compiled on Jan 31 2025 03:17:23',
    120012,
  ],
  ['Materialize', 'PostgreSQL 9.5 on x86_64-unknown-linux-gnu (Materialize 26.36.0)', undefined],
  ['Materialize', 'PostgreSQL 9.6 on x86_64-apple-darwin (materialized 0.21.1-dev)', undefined],
  ['RisingWave', 'PostgreSQL 13.14.0-RisingWave-3.0.2 (391c3a16ef26d0cd86d1236c9b7c122a9a27fb1e)', undefined],
  ['QuestDB', 'PostgreSQL 12.3, compiled by Visual C++ build 1914, 64-bit, QuestDB', 123000],
  ['CrateDB', 'CrateDB 5.10.3 (built e185886/NA, Linux 6.12.13-200.fc41.aarch64 aarch64, OpenJDK 64-Bit Server VM 23.0.2+7)', 140000],
  // Spanner's PGAdapter answers version() itself with "PostgreSQL " + its server_version setting (14.1 by default).
  ['unknown', 'PostgreSQL 14.1', 140001],
  ['PostgreSQL', 'PostgreSQL 12.22 on aarch64-unknown-linux-musl, compiled by gcc (Alpine 14.2.0) 14.2.0, 64-bit', 120022],
  ['PostgreSQL', 'PostgreSQL 12.7 on aarch64-unknown-linux-gnu, compiled by aarch64-unknown-linux-gnu-gcc (GCC) 7.4.0, 64-bit', undefined],
  ['unknown', '', undefined],
];

function refusal(version: string, versionNum?: number): UnsupportedServerError {
  try {
    classifyServer(version, versionNum);
  } catch (error) {
    if (error instanceof UnsupportedServerError) return error;
    throw error;
  }
  throw new Error(`accepted: ${version}`);
}

describe('server identification (recorded version() strings)', () => {
  it.each(POSTGRESQL)('accepts %s', (_, version, versionNum) => {
    const identity = classifyServer(version, versionNum);
    expect(identity).toEqual(expect.objectContaining({ engine: 'PostgreSQL', version }));
    expect(identity.major).toBeGreaterThanOrEqual(MIN_POSTGRES_MAJOR);
    expect(identity.major).toBe(versionNum === undefined ? Number(/^PostgreSQL (\d+)/.exec(version)![1]) : Math.floor(versionNum / 10_000));
    expect(identity.warning).toBeUndefined();
  });

  it.each(REFUSED)('refuses %s: %s', (engine, version, versionNum) => {
    const error = refusal(version, versionNum);
    expect(error.engine).toBe(engine);
    expect(error.serverVersion).toBe(version);
    expect(error.message).toContain('PostgreSQL 13 to 18');
  });

  it('names the oldest supported version when refusing an old PostgreSQL', () => {
    expect(refusal('PostgreSQL 12.22 on x86_64-pc-linux-gnu, compiled by gcc, 64-bit', 120022).reason).toBe('PostgreSQL 12 is older than 13, the oldest version nestjs-txlock supports');
  });

  it("trusts the engine's own name over the PostgreSQL version it claims", () => {
    // CockroachDB reports server_version_num 180000 and YugabyteDB 2.25+ a PostgreSQL 15 build string.
    expect(refusal('CockroachDB CCL v26.2.5 (x86_64-pc-linux-gnu)', 180000).reason).toContain('no-op stubs');
    expect(refusal('PostgreSQL 15.12-YB-2.25.2.0-b0 on x86_64-pc-linux-gnu, compiled by clang, 64-bit', 150012).reason).toContain('advisory locks');
  });

  it('accepts every major version from 13 to 18 and one newer with a warning', () => {
    for (let major = MIN_POSTGRES_MAJOR; major <= MAX_TESTED_POSTGRES_MAJOR; major++) {
      const version = `PostgreSQL ${major}.1 on x86_64-pc-linux-gnu, compiled by gcc, 64-bit`;
      expect(classifyServer(version, major * 10_000 + 1)).toEqual({ engine: 'PostgreSQL', version, versionNum: major * 10_000 + 1, major });
    }
    const next = classifyServer('PostgreSQL 19devel on x86_64-pc-linux-gnu, compiled by gcc (GCC) 14.2.1, 64-bit', 190000);
    expect(next.major).toBe(19);
    expect(next.warning).toContain('newer than 18');
  });

  it('refuses a server whose advisory lock probe is granted but not in pg_locks, or not granted', () => {
    const identity = classifyServer(POSTGRESQL[0]![1], POSTGRESQL[0]![2]);
    expect(() => assertAdvisoryLocksWork(identity, { locked: true, visible: true })).not.toThrow();
    expect(() => assertAdvisoryLocksWork(identity, { locked: true, visible: false })).toThrow(/lock nothing/);
    expect(() => assertAdvisoryLocksWork(identity, { locked: false, visible: false })).toThrow(UnsupportedServerError);
  });
});

describe('server identification (the real server)', () => {
  let db: TestDatabase;
  let dataSource: DataSource;

  beforeAll(async () => {
    db = await createTestDatabase();
    dataSource = await openDataSource(db.url, { poolSize: 2 });
  });
  afterAll(async () => {
    await dataSource?.destroy();
    await db?.drop();
  });

  it('identifies the PostgreSQL the suite runs on, with its advisory locks probed, in one statement', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query<{ version: string; num: string; isolation: string; idle: string }>(
      `SELECT version() AS version, current_setting('server_version_num') AS num, current_setting('default_transaction_isolation') AS isolation,
        extract(epoch FROM current_setting('idle_in_transaction_session_timeout')::interval) * 1000 AS idle`,
    );
    await client.end();
    const warnings: string[] = [];
    const log = RoundTripLog.attach(dataSource);
    const identity = await identifyServer(dataSource, { warn: (message: unknown) => void warnings.push(String(message)) });
    log.stop();
    expect(identity).toEqual({
      engine: 'PostgreSQL',
      version: rows[0]!.version,
      versionNum: Number(rows[0]!.num),
      major: Math.floor(Number(rows[0]!.num) / 10_000),
      // Through .ci/pgbouncer.sh's PgBouncer, the connection's BackendKeyData is PgBouncer's own.
      proxied: poolerUrl() !== undefined,
      defaultIsolation: rows[0]!.isolation,
      idleInTransactionMs: Number(rows[0]!.idle),
    });
    // CI runs this on PostgreSQL 15 and on the embedded PostgreSQL 18.
    expect(identity.major).toBeGreaterThanOrEqual(MIN_POSTGRES_MAJOR);
    expect(identity.major).toBeLessThanOrEqual(MAX_TESTED_POSTGRES_MAJOR);
    expect(warnings).toEqual([]);
    expect(log.count).toBe(1);
  });
});
