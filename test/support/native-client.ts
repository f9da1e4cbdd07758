import pg from 'pg';

/**
 * pg's native client (pg-native over libpq), when the pg-native package can be loaded: .ci/pg-native.sh puts it on
 * NODE_PATH for its pass, and TypeORM then uses it for every DataSource of that pass. Null elsewhere.
 */
export const nativePg = (pg as unknown as { native: typeof pg | null }).native;

// .ci/pg-native.sh sets this: there, a native case skipped for want of pg-native would hide that the pass tests nothing.
if (process.env.TXLOCK_TEST_PG_NATIVE === '1' && !nativePg) throw new Error('TXLOCK_TEST_PG_NATIVE=1 but pg-native cannot be loaded (NODE_PATH)');

/** pg as a DataSource's `driver` option that keeps TypeORM on the JavaScript client even where pg-native loads. */
export const javaScriptPg = { ...pg } as typeof pg; // `native` is a non-enumerable getter: the copy has none

/** Why a test of the native client is skipped, for its title. */
export const NATIVE_MISSING = nativePg ? '' : ' (skipped: pg-native cannot be loaded here; .ci/pg-native.sh runs it)';
