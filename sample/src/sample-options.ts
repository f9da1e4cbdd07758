/** Injection token of the sample's settings. */
export const SAMPLE_OPTIONS = Symbol('SAMPLE_OPTIONS');

/** The sample's settings (from the environment in main.ts; chosen by the tests in test/e2e). */
export interface SampleOptions {
  /** PostgreSQL connection URL. */
  databaseUrl: string;
  /** Connections per process (pg pool `max`). */
  poolSize: number;
  /** This process's name in the stats job's runs ("replica-a"...), to see which replica ran it. */
  replica: string;
  /** Requests per user and day on /quotas. */
  quotaPerDay: number;
}

/** Settings from the environment, with the defaults `npm start` uses. */
export function sampleOptionsFromEnv(databaseUrl: string): SampleOptions {
  return {
    databaseUrl,
    poolSize: Number(process.env.POOL_SIZE ?? 20),
    replica: process.env.REPLICA ?? `replica-${process.pid}`,
    quotaPerDay: Number(process.env.QUOTA_PER_DAY ?? 100),
  };
}
