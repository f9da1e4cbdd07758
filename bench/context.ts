import type { BenchSettings } from './harness.js';
import type { BenchRunner } from './runner.js';

/** The leak check of one long run (scenario 6): memory after the first and after the last tenth of it. */
export interface MemoryReport {
  variant: string;
  operations: number;
  opsPerSec: number;
  /** After a forced GC, at the end of each tenth of the run, MiB. */
  heapMiB: number[];
  rssMiB: number[];
  note?: string;
}

/** What a scenario gets: the database, the runner that measures and reports, and where memory reports go. */
export interface BenchContext {
  url: string;
  settings: BenchSettings;
  runner: BenchRunner;
  memory: MemoryReport[];
}

/** One numbered scenario of the bench. */
export type Scenario = (bench: BenchContext) => Promise<void>;
