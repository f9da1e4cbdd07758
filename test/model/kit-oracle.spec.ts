import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as lib from '../../lib/index.js';
import type { Lib } from '../../check/model/app.js';
import { KitOracle, loadTesting, VARIANTS, type OracleCheck } from '../../check/model/kit-oracle.js';
import { compareRuns } from '../../check/model/kit-oracle-rules.js';
import type { Observation } from '../../check/model/observation.js';
import type { Program } from '../../check/model/program.js';
import { adminUrl } from '../support/database.js';

// The testing kit's differential oracle (check/model/kit-oracle.ts) on fixed programs: each runs as production and
// inside a test transaction, on every app variant (default, joinDataSource: false, timeouts), and must match. Each is
// the shrunk shape of a kind it found on 8ddfa5a (r20, r31, r32, r34) or on main (the caught failed statement).
describe('the testing kit differential oracle', () => {
  let oracle: KitOracle;
  beforeAll(async () => {
    oracle = await KitOracle.open(lib as unknown as Lib, await loadTesting(undefined), adminUrl());
  });
  afterAll(async () => {
    await oracle?.close();
  });

  const expectSame = async (program: Program) => {
    const checks: OracleCheck[] = [];
    for (const variant of VARIANTS) checks.push(await oracle.check(program, variant));
    for (const check of checks) expect(`${check.variant}: ${check.differences.join('\n') || 'same'}`).toBe(`${check.variant}: same`);
    return checks;
  };

  it('an insert outside any app transaction is rolled back with the test, also with joinDataSource: false (r31 on 8ddfa5a)', async () => {
    await expectSame({ requests: [[{ k: 'insert', id: 1, ds: 'main' }]] });
  });

  it('un-awaited work coming after its test is refused, between two tests and during the next (r20, r34 on 8ddfa5a)', async () => {
    const program: Program = { requests: [[{ k: 'spawn', id: 1, body: [{ k: 'insert', id: 2, ds: 'main' }, { k: 'counter', id: 3, ds: 'main', key: 1, by: 1 }] }]] };
    // Twice per variant: the oracle alternates between late work between two tests and during the next test.
    for (const check of [...(await expectSame(program)), ...(await expectSame(program))]) expect(check.late?.results.op2).toBe('TransactionEndedError');
  });

  it('a write in a readOnly transaction and a statement past its timeoutMs fail under the kit as in production (r32 on 8ddfa5a)', async () => {
    const readOnly: Program = { requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', readOnly: true, body: [{ k: 'insert', id: 2, ds: 'main' }] }]] };
    expect((await expectSame(readOnly)).map((check) => check.kit.results.op2)).toEqual(['QueryFailedError:25006', 'QueryFailedError:25006', 'QueryFailedError:25006']);
    // Variant `timeouts`: a `bad` insert first runs a 200 ms statement in a REQUIRES_NEW transaction with timeoutMs: 20.
    const slow: Program = { requests: [[{ k: 'bad', id: 1, ds: 'main' }]] };
    expect((await oracle.check(slow, 'timeouts')).kit.results.op1).toBe('TransactionTimeoutError');
  });

  it('an app transaction whose failed statement was caught ends with RollbackOnlyError under the kit too (found on main)', async () => {
    const checks = await expectSame({ requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'catch', id: 2, body: [{ k: 'bad', id: 3, ds: 'main' }] }] }]] });
    expect(checks.find((check) => check.variant === 'default')!.kit.results.op1).toBe('RollbackOnlyError');
  });

  it('REQUIRES_NEW inside a readOnly transaction: the documented difference is allowed by its rule, by name', async () => {
    const program: Program = { requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'host', readOnly: true, body: [{ k: 'tx', id: 2, ds: 'main', via: 'host', propagation: 'REQUIRES_NEW', body: [{ k: 'insert', id: 3, ds: 'main' }] }] }]] };
    const check = await oracle.check(program, 'default');
    expect(check.differences).toEqual([]);
    expect(check.comparison.allowed.map((allowed) => `${allowed.key}: ${allowed.rule}`)).toContain('op2: REQUIRES_NEW is a savepoint');
  });

  it("a get-or-create inside dataSource.transaction() that fails, with joinDataSource: false: its write is left out of the rows compared, by the documented rule (found by the oracle, seed 1049485686)", async () => {
    // Production: the get-or-create joins the app transaction and commits with it; the kit: it ran in the savepoint
    // dataSource.transaction() became, which the throw rolled back (docs/testing.md's row on TypeORM's own API).
    const program: Program = {
      requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'host', body: [{ k: 'catch', id: 2, body: [{ k: 'dstx', id: 3, ds: 'main', body: [{ k: 'goc', id: 4, ds: 'main', key: 0, update: false }, { k: 'throw', id: 5 }] }] }] }]],
    };
    await expectSame(program);
  });

  it("a manual SERIALIZABLE transaction beside the app transaction's own SERIALIZABLE call, with joinDataSource: false: the isolation check answers as in production (found by the oracle in CI, seed 1357185994)", async () => {
    // Production: the manual transaction is one of its own, so the app transaction stays READ COMMITTED and the call
    // asking for SERIALIZABLE inside it is refused (WeakerIsolationError) once the insert used it. The kit recorded the
    // manual level on the app transaction (allowed by a rule then); now the manual transaction stands apart there too.
    const program: Program = {
      requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'spawn', id: 2, body: [{ k: 'all', id: 3, settle: true, branches: [[{ k: 'manual', id: 4, ds: 'main', isolation: 'SERIALIZABLE', end: 'rollback', body: [] }], [{ k: 'pause', id: 5, how: 'timer' }, { k: 'tx', id: 6, ds: 'main', via: 'host', isolation: 'SERIALIZABLE', body: [] }]] }] }, { k: 'insert', id: 7, ds: 'main' }] }]],
    };
    await expectSame(program);
  });

  it("a manual transaction that writes, then a SERIALIZABLE call in the same app transaction, with joinDataSource: false: the manual one does not use the app transaction under the kit either", async () => {
    // Production: the manual transaction runs on a connection of its own, so the app transaction has sent nothing and
    // the SERIALIZABLE call raises its level; under the kit the manual transaction's savepoint sits in the app
    // transaction, and used to count as its work (WeakerIsolationError).
    const program: Program = {
      requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'manual', id: 2, ds: 'main', end: 'commit', body: [{ k: 'insert', id: 3, ds: 'main' }] }, { k: 'tx', id: 4, ds: 'main', via: 'host', isolation: 'SERIALIZABLE', body: [{ k: 'insert', id: 5, ds: 'main' }] }] }]],
    };
    // The same outcome without any rule's leave: before, the rule on TypeORM's API excused the app transaction's failure.
    for (const check of await expectSame(program)) expect(check.comparison.allowed).toEqual([]);
  });

  it("inside a NOT_SUPPORTED body (or NEVER once its transaction ended) the kit runs as production: outside the caller's transaction, with no rule's leave (found by the oracle: in CI, seeds 779600981 and 20261205, then allowed by a rule)", async () => {
    const programs: Program[] = [
      // A readOnly transaction begun there is one of its own: its write is refused, as in production (the kit joined it to the caller's).
      { requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'tx', id: 2, ds: 'main', via: 'host', propagation: 'NOT_SUPPORTED', body: [{ k: 'tx', id: 3, ds: 'main', via: 'decorator', readOnly: true, body: [{ k: 'insert', id: 4, ds: 'main' }] }] }] }]] },
      // A statement failing there undoes only itself, as autocommit's (it aborted the caller's savepoint).
      { requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'tx', id: 2, ds: 'main', via: 'decorator', propagation: 'NOT_SUPPORTED', body: [{ k: 'all', id: 3, settle: true, branches: [[], [{ k: 'insert', id: 4, ds: 'main' }, { k: 'bad', id: 5, ds: 'main' }]] }] }] }]] },
      // A stray commitTransaction() in a NEVER body after its transaction ended meets no transaction (it met the caller's).
      { requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'all', id: 2, settle: false, branches: [[{ k: 'catch', id: 3, body: [{ k: 'goc', id: 4, ds: 'main', key: 19, update: false }] }, { k: 'tx', id: 5, ds: 'main', via: 'decorator', propagation: 'NEVER', body: [{ k: 'stray', id: 6, ds: 'main', end: 'commit' }] }], [{ k: 'throw', id: 7 }]] }] }]] },
      // Lock calls there, one of them left running when the body returns: each its own transaction (a first try hung here, seed 891909766).
      { requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'tx', id: 2, ds: 'main', via: 'decorator', propagation: 'NOT_SUPPORTED', body: [{ k: 'spawn', id: 3, body: [{ k: 'lock', id: 4, ds: 'main', key: 1, scope: 'transaction', body: [{ k: 'insert', id: 5, ds: 'main' }] }] }, { k: 'lock', id: 6, ds: 'main', key: 2, scope: 'transaction', body: [{ k: 'bad', id: 7, ds: 'main' }] }] }, { k: 'insert', id: 8, ds: 'main' }] }]] },
    ];
    for (const program of programs) for (const check of await expectSame(program)) expect(`${check.variant}: ${check.comparison.allowed.map((allowed) => allowed.rule).join(', ')}`).toBe(`${check.variant}: `);
  });

  it("work a NOT_SUPPORTED body leaves running goes on outside any transaction under the kit, as in production, not in the caller's transaction", async () => {
    const late = (body: Program['requests'][number]): Program => ({
      requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'tx', id: 2, ds: 'main', via: 'host', propagation: 'NOT_SUPPORTED', body: [{ k: 'spawn', id: 3, body: [{ k: 'pause', id: 4, how: 'timer' }, ...body] }] }, { k: 'pause', id: 7, how: 'timer' }, { k: 'pause', id: 8, how: 'timer' }, { k: 'insert', id: 9, ds: 'main' }] }]],
    });
    // MANDATORY finds no transaction (it joined the caller's); a readOnly transaction is its own (its write passed).
    const mandatory = await expectSame(late([{ k: 'tx', id: 5, ds: 'main', via: 'host', propagation: 'MANDATORY', body: [{ k: 'insert', id: 6, ds: 'main' }] }]));
    expect(mandatory[0]!.kit.results.op5).toBe('TransactionRequiredError');
    const readOnly = await expectSame(late([{ k: 'tx', id: 5, ds: 'main', via: 'host', readOnly: true, body: [{ k: 'insert', id: 6, ds: 'main' }] }]));
    expect(readOnly[0]!.kit.results.op6).toBe('QueryFailedError:25006');
    // A lock call that outlives the caller's transaction too runs, as its own transaction (it found that transaction ended).
    const lock = await expectSame(late([{ k: 'lock', id: 5, ds: 'main', key: 1, scope: 'transaction', body: [{ k: 'pause', id: 10, how: 'timer' }, { k: 'insert', id: 6, ds: 'main' }] }]));
    expect(lock[0]!.kit.results.op5).toBe('ok');
  });

  it('two failing writes in concurrent branches of one readOnly transaction: which one aborts it first is the timing\'s, by the documented rule (found by the oracle, seed 1357185994)', async () => {
    const program: Program = {
      requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', readOnly: true, body: [{ k: 'all', id: 2, settle: true, branches: [[{ k: 'pause', id: 3, how: 'timer' }, { k: 'counter', id: 4, ds: 'main', key: 13, by: 2 }], [{ k: 'lock', id: 5, ds: 'main', key: 14, scope: 'transaction', body: [{ k: 'counter', id: 6, ds: 'main', key: 12, by: 2, max: 3 }, { k: 'throw', id: 7 }] }]] }] }]],
    };
    await expectSame(program);
  });

  it("a NOT_SUPPORTED call that writes, then a SERIALIZABLE call in the app transaction around it: raising the level is still allowed under the kit, as in production (found by the oracle in CI, seed 891909766)", async () => {
    // Production: the insert runs outside the app transaction, which stays unused, so the SERIALIZABLE call may raise
    // its level. The kit runs the insert in the app transaction's savepoint, and used to count it as the transaction's own.
    const program: Program = {
      requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'tx', id: 2, ds: 'main', via: 'decorator', propagation: 'NOT_SUPPORTED', body: [{ k: 'insert', id: 3, ds: 'main' }] }, { k: 'tx', id: 4, ds: 'main', via: 'host', isolation: 'SERIALIZABLE', body: [] }, { k: 'stray', id: 5, ds: 'main', end: 'commit' }] }]],
    };
    const checks = await expectSame(program);
    expect(checks.find((check) => check.variant === 'default')!.kit.results.op4).toBe('ok');
  });

  it('what the timing of one transaction\'s concurrent work decides is allowed in both directions, by rule (found by the oracle: seeds 3 and 12, rare draws of the timing)', () => {
    const run = (results: Record<string, string>, trace: string[]): Observation => ({ results, rows: [], counters: {}, goc: {}, overlaps: [], leaks: [], hung: false, trace, ms: 1 });
    // Beside a statement that always fails, a statement of another branch went before the abort in one run, after it in the other.
    const besideBad: Program = { requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'all', id: 2, settle: true, branches: [[{ k: 'goc', id: 3, ds: 'main', key: 0, update: false }], [{ k: 'bad', id: 4, ds: 'main' }]] }] }]] };
    const trace = ['s1', 's2', 's3', 's4', 'e3', 'e4', 'e2', 'e1'];
    for (const [production, kit] of [['ok:created', 'QueryFailedError:25P02'], ['QueryFailedError:25P02', 'ok:created']]) {
      const results = (op3: string) => ({ op1: 'RollbackOnlyError', op2: 'ok', op3, op4: 'QueryFailedError:23514' });
      expect(compareRuns(besideBad, 'default', run(results(production!), trace), run(results(kit!), trace)).differences).toEqual([]);
    }
    // A NESTED call in a branch of a Promise.all that rejected met the transaction's end in both runs: under the kit it got
    // in and ran its body first, in production it was refused at once.
    const nested: Program = { requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'host', body: [{ k: 'all', id: 2, settle: false, branches: [[{ k: 'throw', id: 3 }], [{ k: 'tx', id: 4, ds: 'main', via: 'host', propagation: 'NESTED', body: [{ k: 'insert', id: 5, ds: 'main' }] }]] }] }]] };
    const ended = { op1: 'ProgramError', op2: 'ProgramError', op3: 'ProgramError', op4: 'TransactionEndedError' };
    const comparison = compareRuns(nested, 'default', run(ended, ['s1', 's2', 's3', 'e3', 'e2', 'e1', 's4', 'e4']), run({ ...ended, op5: 'ok' }, ['s1', 's2', 's3', 's4', 's5', 'e3', 'e2', 'e1', 'e5', 'e4']));
    expect(comparison.differences).toEqual([]);
    // Un-awaited work whose joined call fails before or after its transaction's COMMIT: that transaction's outcome is the
    // timing's, in production too (seed 805379937).
    const late: Program = { requests: [[{ k: 'tx', id: 1, ds: 'main', via: 'decorator', body: [{ k: 'spawn', id: 2, body: [{ k: 'tx', id: 3, ds: 'main', via: 'decorator', body: [{ k: 'insert', id: 4, ds: 'main' }, { k: 'throw', id: 5 }] }] }] }]] };
    const lateResults = (op1: string) => ({ op1, req0: op1, op2: 'ProgramError', op3: 'ProgramError', op4: 'ok' });
    for (const [production, kit] of [['RollbackOnlyError', 'ok'], ['ok', 'RollbackOnlyError']]) {
      expect(compareRuns(late, 'default', run(lateResults(production!), trace), run(lateResults(kit!), trace)).differences).toEqual([]);
    }
    // Not when the call around it answered otherwise than with the end.
    expect(compareRuns(nested, 'default', run({ ...ended, op4: 'ok' }, []), run({ ...ended, op4: 'ok', op5: 'ok' }, [])).differences).toEqual(['op5: production not run, under the kit ok']);
  });

  it('a session lock after a transaction lock on one key, and the reverse, run under the kit as in production (a kit defect found by the oracle on main)', async () => {
    // The kit took the session lock on a pooled connection of its own, where it waited for ever for the key the test's
    // transaction held since the transaction-scope lock (released only when the test ends).
    const key = (first: 'transaction' | 'session', second: 'transaction' | 'session'): Program => ({
      requests: [[{ k: 'lock', id: 1, ds: 'main', key: 1, scope: first, body: [{ k: 'insert', id: 2, ds: 'main' }] }, { k: 'lock', id: 3, ds: 'main', key: 1, scope: second, body: [{ k: 'counter', id: 4, ds: 'main', key: 1, by: 1 }] }]],
    });
    await expectSame(key('transaction', 'session'));
    await expectSame(key('session', 'transaction'));
  });

  it('a session lock whose body writes, beside an app transaction that waits for its key, in branches or requests of one test, runs under the kit as in production', async () => {
    // With the body's statements taking turns with the other request's transaction (a savepoint waiting for the key the
    // session lock held), the test hung; the session lock call now holds the test's connection while it runs.
    const sessionBody: Program['requests'][number] = [{ k: 'lock', id: 2, ds: 'main', key: 1, scope: 'session', body: [{ k: 'pause', id: 3, how: 'timer' }, { k: 'insert', id: 4, ds: 'main' }] }];
    await expectSame({ requests: [[{ k: 'all', id: 1, settle: true, branches: [sessionBody, [{ k: 'lock', id: 5, ds: 'main', key: 1, scope: 'transaction', body: [{ k: 'insert', id: 6, ds: 'main' }] }]] }]] });
    await expectSame({ requests: [sessionBody, [{ k: 'tx', id: 7, ds: 'main', via: 'decorator', body: [{ k: 'lock', id: 5, ds: 'main', key: 1, scope: 'transaction', body: [{ k: 'insert', id: 6, ds: 'main' }] }] }]] });
    // Work the session lock's body left running goes on after it, outside any transaction, as in production.
    await expectSame({
      requests: [[{ k: 'lock', id: 1, ds: 'main', key: 1, scope: 'session', body: [{ k: 'spawn', id: 2, body: [{ k: 'pause', id: 3, how: 'timer' }, { k: 'insert', id: 4, ds: 'main' }, { k: 'lock', id: 5, ds: 'main', key: 1, scope: 'transaction', body: [] }] }] }, { k: 'pause', id: 6, how: 'timer' }, { k: 'insert', id: 8, ds: 'main' }]],
    });
  });
});
