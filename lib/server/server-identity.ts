import { UnsupportedServerError } from '../errors.js';

/** The oldest PostgreSQL major version nestjs-txlock supports. */
export const MIN_POSTGRES_MAJOR = 13;
/** The newest PostgreSQL major version nestjs-txlock is tested on; newer ones start with a logged warning. */
export const MAX_TESTED_POSTGRES_MAJOR = 18;

/** The server behind a DataSource, as identified at bootstrap. Only PostgreSQL is ever accepted. */
export interface ServerIdentity {
  engine: 'PostgreSQL';
  /** What `SELECT version()` answered. */
  version: string;
  /** `server_version_num`, e.g. 150020 for 15.2. */
  versionNum: number;
  /** The major version, e.g. 15. */
  major: number;
  /** Set when the server is accepted but newer than MAX_TESTED_POSTGRES_MAJOR. */
  warning?: string;
}

/** An engine that answers like PostgreSQL but on which nestjs-txlock cannot lock, and why. */
interface LookAlike {
  engine: string;
  /** Matches the engine's own name in its `version()`, which many of them prefix with "PostgreSQL <n>". */
  pattern: RegExp;
  reason: string;
}

// Checked before anything else: YugabyteDB, Materialize, RisingWave and QuestDB all start with "PostgreSQL <n>".
const LOOK_ALIKES: readonly LookAlike[] = [
  {
    engine: 'CockroachDB',
    pattern: /\bCockroachDB\b/i,
    reason:
      'its pg_advisory_lock functions are no-op stubs that grant every caller at once, or are missing (cockroachdb/cockroach#13546), ' +
      'and pg_locks never shows an advisory lock, so every critical section would run unprotected',
  },
  {
    engine: 'YugabyteDB',
    pattern: /-YB-|\bYugabyteDB\b/i,
    reason:
      'advisory locks are unsupported before 2.25 (yugabyte-db#3642) and since then a preview behind the ysql_yb_enable_advisory_locks ' +
      'flag, with known defects (pg_locks crashed the server while a session waited on an advisory lock: yugabyte-db#26972); ' +
      'nestjs-txlock reads pg_locks and relies on PostgreSQL lock_timeout and savepoint semantics',
  },
  {
    engine: 'Amazon Redshift',
    pattern: /\bRedshift\b/i,
    reason: 'it is a data warehouse derived from PostgreSQL 8.0: no advisory locks, no SAVEPOINT, no ON CONFLICT',
  },
  {
    engine: 'Greenplum',
    pattern: /\bGreenplum\b|\bCloudberry\b/i,
    reason:
      'it is a distributed fork of PostgreSQL 12 or older (advisory locks live on the coordinator only, and row locks and ON CONFLICT ' +
      'differ), older than PostgreSQL 13',
  },
  {
    engine: 'Materialize',
    pattern: /\bMaterialized?\b/i,
    reason: 'it is a streaming database that speaks the PostgreSQL protocol: no advisory locks, no SAVEPOINT, no row locks',
  },
  {
    engine: 'RisingWave',
    pattern: /\bRisingWave\b/i,
    reason: 'it is a streaming database that speaks the PostgreSQL protocol: no advisory locks, no SAVEPOINT, no row locks',
  },
  {
    engine: 'QuestDB',
    pattern: /\bQuestDB\b/i,
    reason: 'it is a time-series database that speaks the PostgreSQL protocol: no advisory locks, no SAVEPOINT, no row locks',
  },
  {
    engine: 'CrateDB',
    pattern: /\bCrateDB\b/i,
    reason: 'it has no transactions, so no transaction-scope locks, no SAVEPOINT and no row locks, and no advisory locks',
  },
  {
    engine: 'Cloud Spanner',
    pattern: /\bSpanner\b/i,
    reason: 'its PostgreSQL interface has no advisory locks and no SAVEPOINT',
  },
];

// Every PostgreSQL build prints "PostgreSQL <version> on <platform>, compiled by <compiler>, <n>-bit" (MSVC builds
// leave out " on <platform>"); forks and services keep that shape and add a note in parentheses. Spanner's PGAdapter,
// for one, answers a bare "PostgreSQL 14.1".
const POSTGRESQL_BUILD = /^PostgreSQL (\d+).*\bcompiled by\b/s;

/**
 * Identifies the server from its `version()` and `server_version_num` (a pure function, so every recorded string
 * can be tested): PostgreSQL 13 and newer is accepted (newer than MAX_TESTED_POSTGRES_MAJOR with a warning);
 * engines known not to lock like PostgreSQL, PostgreSQL older than 13, and anything that does not look like a
 * PostgreSQL build are refused with UnsupportedServerError naming the engine and the reason.
 */
export function classifyServer(version: string, versionNum?: string | number | null): ServerIdentity {
  const text = String(version ?? '').trim();
  const lookAlike = LOOK_ALIKES.find((candidate) => candidate.pattern.test(text));
  if (lookAlike) throw new UnsupportedServerError(lookAlike.engine, lookAlike.reason, text);
  const build = POSTGRESQL_BUILD.exec(text);
  if (!build) {
    throw new UnsupportedServerError(
      'unknown',
      'its version() is not one a PostgreSQL build prints ("PostgreSQL <version> on <platform>, compiled by <compiler>"), so it is an ' +
        'engine that only speaks the PostgreSQL protocol, and nestjs-txlock cannot know whether its advisory locks lock',
      text,
    );
  }
  const num = Number(versionNum);
  const known = Number.isSafeInteger(num) && num >= 10_000;
  const major = known ? Math.floor(num / 10_000) : Number(build[1]);
  if (major < MIN_POSTGRES_MAJOR) {
    throw new UnsupportedServerError('PostgreSQL', `PostgreSQL ${major} is older than ${MIN_POSTGRES_MAJOR}, the oldest version nestjs-txlock supports`, text);
  }
  const identity: ServerIdentity = { engine: 'PostgreSQL', version: text, versionNum: known ? num : major * 10_000, major };
  if (major > MAX_TESTED_POSTGRES_MAJOR) {
    identity.warning =
      `PostgreSQL ${major} is newer than ${MAX_TESTED_POSTGRES_MAJOR}, the newest version nestjs-txlock is tested on: ` +
      `it should work, but run your own lock tests before relying on it.`;
  }
  return identity;
}

/** What the bootstrap query's advisory-lock probe saw: a shared lock taken, and whether pg_locks showed it. */
export interface AdvisoryProbe {
  locked: unknown;
  visible: unknown;
}

/**
 * Refuses a server that looked like PostgreSQL but whose advisory locks do not reach a lock manager: the probe
 * lock was not granted, or was granted without appearing in pg_locks (functions stubbed to answer true).
 */
export function assertAdvisoryLocksWork(identity: ServerIdentity, probe: AdvisoryProbe): void {
  if (probe.locked === true && probe.visible === true) return;
  throw new UnsupportedServerError(
    'PostgreSQL look-alike',
    probe.locked === true
      ? 'pg_try_advisory_xact_lock_shared() answered true but the lock never appeared in pg_locks, so its advisory locks lock nothing'
      : `pg_try_advisory_xact_lock_shared() on a key nobody holds answered ${String(probe.locked)} instead of true`,
    identity.version,
  );
}
