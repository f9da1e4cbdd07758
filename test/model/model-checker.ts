import { afterAll, beforeAll, expect } from '@jest/globals';
import * as lib from '../../lib/index.js';
import type { Lib } from '../../check/model/app.js';
import { programAsCode, observationSummary } from '../../check/model/shrink-report.js';
import type { Program } from '../../check/model/program.js';
import { CheckingSession } from '../../check/model/session.js';
import { adminUrl } from '../support/database.js';

/** The model checker for one describe block: its own databases and app, made in beforeAll, dropped in afterAll. */
export interface ModelChecker {
  /** Runs `program` on the real PostgreSQL `attempts` times; each run must hold the invariants and be explained by the model. */
  expectExplained(program: Program, options?: { attempts?: number }): Promise<void>;
}

export function useModelChecker(): ModelChecker {
  let session: CheckingSession | undefined;
  beforeAll(async () => {
    session = await CheckingSession.open(lib as unknown as Lib, adminUrl(), { analytics: true });
  });
  afterAll(async () => {
    await session?.close();
  });
  return {
    async expectExplained(program, { attempts = 10 } = {}) {
      for (let attempt = 1; attempt <= attempts; attempt++) {
        const check = await session!.check(program, { schedules: 200_000, ms: 30_000 });
        if (!check.ok) {
          const detail = `${check.reason}\n${programAsCode(program, check.observed, check.verdict)}\n${observationSummary(check.observed)}`;
          expect(`attempt ${attempt}: ${detail}`).toBe(`attempt ${attempt}: explained`);
        }
      }
    },
  };
}
