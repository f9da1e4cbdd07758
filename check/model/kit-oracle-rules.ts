/**
 * The testing kit's differential oracle: how a run under the kit is compared with the same program's production
 * run, and the rules, one per difference docs/testing.md lists ("Where a test differs from production"), each saying
 * which outcomes it allows and why. A difference no rule allows is a defect of the kit (or of the rules).
 *
 * A rule allows a difference at one operation. What settled before that operation began is still compared; what
 * settled after it may follow from it (a refused call makes its caller fail, its transaction roll back...) and is left
 * out, and so are the rows seen. The rows after the test's rollback, and what the test leaves behind, are compared
 * whatever the rules say: no documented difference lets a test's writes survive it.
 */
import { analyse } from './generator.js';
import type { Observation } from './observation.js';
import { counterKey, gocKey, onDataSource, opKey, rowLabel, type Op, type Program } from './program.js';
import type { Variant } from './kit-oracle.js';

/** Where an operation sits in its program, as the rules ask. */
interface Place {
  op: Op;
  /** The operations around it, outermost first. */
  ancestors: Op[];
  /** An app transaction is running where the operation is called (production: a transaction; kit: its savepoint). */
  inTx: boolean;
  /** Inside (or being) a transaction that begins with a REPEATABLE READ or SERIALIZABLE level. */
  isolated: boolean;
  /** The concurrent branches it runs in: `<all>.<branch>` for a Promise.all's branch, `s<spawn>` for un-awaited work. */
  path: string[];
}

/** Whether two operations may run at the same time: in different branches of one Promise.all, or one in un-awaited work the other is not in. */
export function concurrent(a: Place, b: Place): boolean {
  let k = 0;
  while (k < a.path.length && k < b.path.length && a.path[k] === b.path[k]) k++;
  const restA = a.path.slice(k);
  const restB = b.path.slice(k);
  if (restA.some((step) => step.startsWith('s')) || restB.some((step) => step.startsWith('s'))) return true;
  return restA.length > 0 && restB.length > 0 && restA[0]!.split('.')[0] === restB[0]!.split('.')[0];
}

/** What a rule sees: the program, each operation's place, which operations use a resource another branch also uses. */
export interface RuleContext {
  program: Program;
  variant: Variant;
  places: Map<number, Place>;
  /** Operations that use a lock, counter or get-or-create key that a concurrent branch of the program also uses. */
  racing: Set<number>;
  /** Every operation's result in each run ('op<id>' keys). */
  results: { production: Readonly<Record<string, string>>; kit: Readonly<Record<string, string>> };
}

/** One documented difference. */
export interface Rule {
  name: string;
  /** The row of docs/testing.md's table it stands for. */
  doc: string;
  /** True when the results `production` and `kit` of operation `id` may differ by this rule. */
  allows(ctx: RuleContext, id: number, production: string, kit: string): boolean;
}

const isError = (result: string | undefined) => result !== undefined && !result.startsWith('ok') && !result.startsWith('caught:');

/** The operation at `id`, or one of the operations around it, satisfies `test`. */
const atOrInside = (ctx: RuleContext, id: number, test: (op: Op, place: Place) => boolean): boolean => {
  const place = ctx.places.get(id);
  if (!place) return false;
  if (test(place.op, place)) return true;
  return place.ancestors.some((op) => test(op, ctx.places.get(op.id)!));
};

/**
 * Work that production runs apart from the app transaction it is called in, and the kit in a savepoint of it: a
 * transaction of its own (`REQUIRES_NEW`, a transaction or a lock call), or a `NOT_SUPPORTED` body (or `NEVER` called
 * once its transaction ended), which runs outside any transaction.
 */
const ownTransactionInside = (op: Op, place: Place, variant: Variant): boolean =>
  place.inTx && (((op.k === 'tx' || op.k === 'lock') && op.propagation === 'REQUIRES_NEW') || (variant === 'timeouts' && probed(op)) || suspendsItsCaller(op));

const suspendsItsCaller = (op: Op): boolean => op.k === 'tx' && (op.propagation === 'NOT_SUPPORTED' || op.propagation === 'NEVER');

/** Variant `timeouts`: the operations whose insert first runs the slow statement in a REQUIRES_NEW transaction (kit-oracle.ts). */
const probed = (op: Op): boolean => op.k === 'bad' || (op.k === 'insert' && op.id % 3 === 0);

/**
 * docs/testing.md, "REQUIRES_NEW ... inside an app transaction" and "`NOT_SUPPORTED` inside an app transaction":
 * production runs it on a second connection and commits it at once (a NOT_SUPPORTED body: each statement in
 * autocommit); the kit makes it a savepoint of the transaction around it. So its outcome may differ where that
 * matters: inside a `readOnly` transaction the kit refuses it (TestKitLimitError), inside a transaction that is
 * already rollback-only or aborted the savepoint fails where production's own transaction goes on, and its body
 * sees the caller's uncommitted rows. (The `timeouts` variant's probe is such a transaction, around a `bad` insert and every third insert.)
 * Its writes after a rollback of the caller: ownCommitsOutliveTheCaller.
 */
export const requiresNewIsASavepoint: Rule = {
  name: 'REQUIRES_NEW is a savepoint',
  doc: '`REQUIRES_NEW`, a single flight\'s or a lease\'s own transaction inside an app transaction',
  allows: (ctx, id) => {
    if (atOrInside(ctx, id, (op, place) => ownTransactionInside(op, place, ctx.variant))) return true;
    // While the savepoint is open, the other branches of its transaction wait for it (production's second connection
    // lets them go on): what they do and when may differ.
    const place = ctx.places.get(id)!;
    return [...ctx.places.values()].some((other) => ownTransactionInside(other.op, other, ctx.variant) && concurrent(place, other));
  },
};

/**
 * docs/testing.md, "isolation level and `retries` of app transactions": under the kit every app transaction runs at
 * the test transaction's level. Production's REPEATABLE READ and SERIALIZABLE transactions may fail with a
 * serialization failure (40001) or deadlock (40P01) the kit never raises, and see a snapshot the kit does not take.
 */
export const isolationIsTheTestTransactions: Rule = {
  name: 'isolation is the test transaction\'s',
  doc: 'isolation level and `retries` of app transactions',
  allows: (ctx, id, production) => {
    const place = ctx.places.get(id);
    if (!place?.isolated) return false;
    return /40001|40P01|Serialization|Deadlock/.test(production) || ctx.racing.has(id);
  },
};

// The result of a statement sent in a transaction a failed statement had aborted.
const IN_FAILED_TRANSACTION = 'QueryFailedError:25P02';

/**
 * docs/testing.md, "requests that run at once in one test": production runs concurrent work (Promise.all branches,
 * un-awaited calls) each on its own connection, racing; the kit runs it on the test's one connection, taking turns.
 * Which of two racing calls creates a get-or-create row, gets a `nowait` lock or a `tryIncrement` under its max is
 * the race's, and production's run is only one draw of it: a racing operation's result may differ.
 */
export const oneConnectionPerTest: Rule = {
  name: 'one connection per test',
  doc: 'requests that run at once in one test',
  allows: (ctx, id, production, kit) =>
    ctx.racing.has(id) ||
    firstRejectionOfSeveral(ctx, id, production, kit) ||
    unawaitedRacesItsEnd(ctx, id, production, kit) ||
    abortRacesTheWait(ctx, id, production, kit) ||
    branchesRaceTheAbort(ctx, id, production, kit),
};

// Concurrent branches of one transaction (a Promise.all or allSettled) whose statements both fail: the first failure
// aborts the transaction and the other then meets 25P02, and which comes first is the timing's, which differs between
// production's round trips and the kit's (found by the oracle, seed 1357185994: two writes in a readOnly transaction).
// The same when only one of them fails for certain (a `bad` statement): a statement of another branch went before it in
// one run (ok) and after it in the other (25P02) (found by the oracle, seed 3).
function branchesRaceTheAbort(ctx: RuleContext, id: number, production: string, kit: string): boolean {
  if (production !== IN_FAILED_TRANSACTION && kit !== IN_FAILED_TRANSACTION) return false;
  if (isError(production) && isError(kit)) return atOrInside(ctx, id, (op) => op.k === 'all');
  const place = ctx.places.get(id)!;
  return [...ctx.places.values()].some((other) => other.op.k === 'bad' && other.inTx && concurrent(place, other));
}

// A lock call whose signal aborts a moment after the call (the programs' `abort`: 3 ms) is aborted only if it is still
// waiting then: under the kit, where the test's calls take turns on one connection, it may still be waiting where
// production already held the lock, or the other way round (found by the oracle in CI, seed 1272777766).
function abortRacesTheWait(ctx: RuleContext, id: number, production: string, kit: string): boolean {
  const op = ctx.places.get(id)?.op;
  return op?.k === 'lock' && op.abort === true && (production === 'LockAbortedError' || kit === 'LockAbortedError');
}

// Un-awaited work (a spawn, a branch of a Promise.all that rejected early) races the end of the transaction it runs
// in: whether it got in before the end or found it ended (TransactionEndedError) is the timing's, in production too;
// so is whether it got in before a statement of its caller aborted that transaction (25P02; found by the oracle in CI,
// seed 961056791). (Work that comes after its test ended is checked apart, with no rule: lateWorkProblems.)
// The same for what runs inside a call there that met the end in both runs: in one it got in before the end and ran
// its body (a NESTED savepoint begun, its insert sent), in the other it was refused at once and its body never ran
// (found by the oracle, seed 12).
const RACES_ITS_END = ['TransactionEndedError', IN_FAILED_TRANSACTION];
// And a call whose body leaves such work running: whether that work's failure in a call that joined it came before the
// call's COMMIT (RollbackOnlyError, its writes rolled back) or after it (ok, its writes committed) is the timing's too,
// in production as well (found by the oracle in CI, seed 805379937: it went either way in production's own replays).
const LATE_FAILURE = ['ok', 'RollbackOnlyError'];
function unawaitedRacesItsEnd(ctx: RuleContext, id: number, production: string, kit: string): boolean {
  if (production !== kit && LATE_FAILURE.includes(production) && LATE_FAILURE.includes(kit)) {
    const op = ctx.places.get(id)?.op;
    if (op && [...walkOp(op)].some((inner) => inner !== op && (inner.k === 'spawn' || (inner.k === 'all' && !inner.settle)))) return true;
  }
  const metTheEnd = (op: Op) => RACES_ITS_END.includes(ctx.results.production[opKey(op.id)] ?? '') && RACES_ITS_END.includes(ctx.results.kit[opKey(op.id)] ?? '');
  const raced = RACES_ITS_END.includes(production) || RACES_ITS_END.includes(kit) || ((production === 'not run' || kit === 'not run') && ctx.places.get(id)!.ancestors.some(metTheEnd));
  return raced && atOrInside(ctx, id, (op) => op.k === 'spawn' || (op.k === 'all' && !op.settle));
}

// A `Promise.all` rejects with whichever branch fails first: with two failing branches, that is the timing's, which
// differs between production's connections and the kit's one (both runs must still fail; each branch's own operations
// are compared on their own).
function firstRejectionOfSeveral(ctx: RuleContext, id: number, production: string, kit: string): boolean {
  const op = ctx.places.get(id)?.op;
  return op?.k === 'all' && !op.settle && op.branches.length > 1 && isError(production) && isError(kit);
}

/**
 * docs/testing.md, "TypeORM's own API inside an app transaction with `joinDataSource: false`": production leaves
 * `dataSource.createQueryRunner()` and `dataSource.transaction()` out of the app's transactions (a connection and a
 * commit of their own); the kit joins them to the test, and so to the app transaction's savepoint they are called in
 * (outside it, they would wait on the test's one connection for that savepoint). Their results and writes may differ.
 */
export const typeormApiJoinsUnderTheKit: Rule = {
  name: "TypeORM's API joins under the kit (joinDataSource: false)",
  doc: "TypeORM's own API inside an app transaction, with `joinDataSource: false`",
  allows: (ctx, id, production, kit) => {
    if (ctx.variant !== 'join-off') return false;
    if (atOrInside(ctx, id, (op, place) => ownConnectionUnderJoinOff(op, place, ctx.variant))) return true;
    // And the calls around one: a statement failing in it aborts production's app transaction (the repositories of
    // the library join that), while the kit's savepoint keeps the failure to itself.
    // (Not the app transaction's isolation checks around one: under the kit such a call stands apart from the app
    // transaction, neither using it nor setting its level, as production's connection of its own; seed 1357185994
    // found the difference that was here until the kit did so.)
    return [...walkOp(ctx.places.get(id)!.op)].some((inner) => ownConnectionUnderJoinOff(inner, ctx.places.get(inner.id)!, ctx.variant));
  },
};

const TYPEORM_API: readonly string[] = ['manual', 'dstx', 'stray'];
const ownConnectionUnderJoinOff = (op: Op, place: Place, variant: Variant): boolean => variant === 'join-off' && place.inTx && TYPEORM_API.includes(op.k);

/**
 * The rules, in the order they are asked. docs/testing.md's other rows need none: `readOnly` and `timeoutMs` apply
 * under the kit (no difference in outcome: the oracle checks that they match), coalesced increments and single
 * flights are shared per scope (the outcomes are the same; the programs have no single flights), and the programs
 * read no streams.
 */
export const RULES: readonly Rule[] = [requiresNewIsASavepoint, typeormApiJoinsUnderTheKit, isolationIsTheTestTransactions, oneConnectionPerTest];

/**
 * The keys (rows, counters, get-or-create keys) the rows-seen comparison leaves out: the writes of a transaction of
 * its own (REQUIRES_NEW), of a NOT_SUPPORTED body, or (joinDataSource: false) of TypeORM's own API inside an app
 * transaction, when an operation around it failed in production. Production committed them on their own (docs/testing.md, the REQUIRES_NEW and NOT_SUPPORTED rows);
 * under the kit they are part of the caller's savepoint and roll back with it. For TypeORM's API also when it failed
 * itself: the library's calls in its body (a get-or-create) join the app transaction in production and commit with
 * it, while under the kit they ran in its savepoint, which its failure rolled back (found by the oracle, seed 1049485686).
 */
export function ownCommitsOutliveTheCaller(ctx: RuleContext, production: Observation): Set<string> {
  const keys = new Set<string>();
  for (const place of ctx.places.values()) {
    const typeormApi = ownConnectionUnderJoinOff(place.op, place, ctx.variant);
    const own = ownTransactionInside(place.op, place, ctx.variant) || typeormApi;
    const failed = (typeormApi ? [place.op, ...place.ancestors] : place.ancestors).some((op) => isError(production.results[opKey(op.id)]));
    if (!own || !failed) continue;
    for (const op of walkOp(place.op)) for (const key of writtenKeys(op)) keys.add(key);
  }
  return keys;
}

function* walkOp(op: Op): Generator<Op> {
  yield op;
  for (const child of 'body' in op ? [op.body] : op.k === 'all' ? op.branches : []) for (const inner of child) yield* walkOp(inner);
}

function writtenKeys(op: Op): string[] {
  if (op.k === 'insert') return [onDataSource('main', rowLabel(op.id))];
  if (op.k === 'counter') return [onDataSource('main', counterKey(op.key))];
  if (op.k === 'goc') return [onDataSource('main', gocKey(op.key))];
  return [];
}

/** Each operation's place (see Place), following the propagation table as the generator does. */
export function placesOf(program: Program): Map<number, Place> {
  const places = new Map<number, Place>();
  const visit = (block: readonly Op[], ancestors: Op[], inTx: boolean, isolated: boolean, path: string[]) => {
    for (const op of block) {
      const place: Place = { op, ancestors, inTx, isolated: isolated || (op.k === 'tx' && op.isolation !== undefined && op.isolation !== 'READ COMMITTED'), path };
      places.set(op.id, place);
      let innerTx = inTx;
      let innerIsolated = isolated;
      if (op.k === 'tx') {
        const propagation = op.propagation ?? 'REQUIRED';
        const begins = propagation === 'REQUIRES_NEW' || (!inTx && (propagation === 'REQUIRED' || propagation === 'NESTED'));
        innerTx = begins || (inTx && propagation !== 'NOT_SUPPORTED' && propagation !== 'NEVER');
        innerIsolated = begins ? op.isolation !== undefined && op.isolation !== 'READ COMMITTED' : innerTx && isolated;
      } else if (op.k === 'lock') {
        innerTx = op.scope === 'transaction';
        innerIsolated = op.scope === 'transaction' && (op.propagation === 'REQUIRES_NEW' || !inTx) ? false : innerTx && isolated;
      }
      const inner = [...ancestors, op];
      if (op.k === 'all') op.branches.forEach((branch, i) => visit(branch, inner, innerTx, innerIsolated, [...path, `${op.id}.${i}`]));
      else if ('body' in op) visit(op.body, inner, innerTx, innerIsolated, op.k === 'spawn' ? [...path, `s${op.id}`] : path);
    }
  };
  for (const request of program.requests) visit(request, [], false, false, []);
  return places;
}

/** Operations using a resource (lock key, counter, get-or-create key) that another concurrent branch also uses. */
export function racingOps(program: Program): Set<number> {
  const { uses } = analyse(program);
  const racing = new Set<number>();
  for (const a of uses) {
    for (const b of uses) {
      if (a !== b && a.resource === b.resource && a.branch !== b.branch) racing.add(a.op.id);
    }
  }
  return racing;
}

/** How a kit run compared with the production run of the same program. */
export interface Comparison {
  /** Differences no rule allows: each one a defect (of the kit, or of the rules). */
  differences: string[];
  /** Differences a rule allowed: the rule, the operation, and both results. */
  allowed: { rule: string; key: string; production: string; kit: string }[];
  /** Results left out: they settled after an allowed difference began. */
  notCompared: string[];
  /** Whether the rows seen were compared (no allowed difference), and which keys a rule left out of them. */
  stateCompared: boolean;
  excludedKeys: string[];
}

/**
 * docs/testing.md, "`readOnly`, `timeoutMs` of app transactions": no difference in outcome. A write production refuses in
 * a read-only transaction (25006) or a statement it stops at the transaction's timeout, which the kit lets pass, is a
 * difference whatever rule would otherwise apply at that operation: a `REQUIRES_NEW` savepoint applies them too, and so
 * does a transaction begun in a `NOT_SUPPORTED` body (until 5 December the kit joined it to the caller's: seed 779600981).
 */
function neverExcused(production: string | undefined, kit: string | undefined): boolean {
  return kit?.startsWith('ok') === true && (production === 'TransactionTimeoutError' || production === 'QueryFailedError:25006');
}

const position = (trace: readonly string[], event: string): number => {
  const at = trace.indexOf(event);
  return at < 0 ? Infinity : at;
};

/** Compares the kit's run of `program` with production's (see the file comment). */
export function compareRuns(program: Program, variant: Variant, production: Observation, kit: Observation): Comparison {
  const ctx: RuleContext = { program, variant, places: placesOf(program), racing: racingOps(program), results: { production: production.results, kit: kit.results } };
  const differences: string[] = [];
  const allowed: Comparison['allowed'] = [];
  const keys = [...new Set([...Object.keys(production.results), ...Object.keys(kit.results)])];
  const differing = keys.filter((key) => production.results[key] !== kit.results[key]);
  const unexplained: string[] = [];
  for (const key of differing) {
    const id = key.startsWith('op') ? Number(key.slice(2)) : undefined;
    const rule = id === undefined || neverExcused(production.results[key], kit.results[key]) ? undefined : RULES.find((r) => r.allows(ctx, id, production.results[key] ?? 'not run', kit.results[key] ?? 'not run'));
    if (rule) allowed.push({ rule: rule.name, key, production: production.results[key] ?? 'not run', kit: kit.results[key] ?? 'not run' });
    else unexplained.push(key);
  }
  // Where the first allowed difference began, in each run.
  const cut = (trace: readonly string[]) => Math.min(...allowed.map(({ key }) => position(trace, `s${key.slice(2)}`)));
  const cutProduction = cut(production.trace);
  const cutKit = cut(kit.trace);
  const notCompared: string[] = [];
  for (const key of unexplained) {
    const event = key.startsWith('op') ? `e${key.slice(2)}` : undefined;
    const settledBefore = event !== undefined && position(production.trace, event) < cutProduction && position(kit.trace, event) < cutKit;
    if (allowed.length > 0 && !settledBefore) notCompared.push(key);
    else differences.push(`${key}: production ${production.results[key] ?? 'not run'}, under the kit ${kit.results[key] ?? 'not run'}`);
  }
  const excluded = ownCommitsOutliveTheCaller(ctx, production);
  const stateCompared = allowed.length === 0;
  if (stateCompared) {
    const keep = (names: string[]) => names.filter((name) => !excluded.has(name));
    const entries = (record: Record<string, number>) => Object.fromEntries(Object.entries(record).filter(([name]) => !excluded.has(name)).sort());
    const pairs: [string, unknown, unknown][] = [
      ['rows', keep(production.rows), keep(kit.rows)],
      ['counters', entries(production.counters), entries(kit.counters)],
      ['get-or-create rows per key', entries(production.goc), entries(kit.goc)],
    ];
    for (const [what, a, b] of pairs) {
      if (JSON.stringify(a) !== JSON.stringify(b)) differences.push(`${what} seen: production committed ${JSON.stringify(a)}, the test sees ${JSON.stringify(b)}`);
    }
  }
  return { differences, allowed, notCompared, stateCompared, excludedKeys: [...excluded] };
}

// Refusals of a call's own options, before it sends anything (a MANDATORY call outside a transaction): late work gets
// them as production does, whether or not its test ended.
const REFUSED_BEFORE_SENDING: readonly string[] = ['TransactionRequiredError', 'TransactionNotAllowedError', 'InvalidOptionError'];

/**
 * docs/testing.md, "Work belongs to the test that started it": un-awaited work that comes after its test ended fails
 * with TransactionEndedError (between two tests, and during the next one alike). Every statement-sending operation of
 * such work that ran must have been refused so; no rule excuses it.
 */
export function lateWorkProblems(program: Program, late: Observation, production: Observation): string[] {
  const problems: string[] = [];
  const visit = (block: readonly Op[], inSpawn: boolean) => {
    for (const op of block) {
      const late_ = inSpawn;
      const result = late.results[opKey(op.id)];
      const refusedAlike = result === production.results[opKey(op.id)] && REFUSED_BEFORE_SENDING.includes(result ?? '');
      if (late_ && result !== undefined && ['insert', 'bad', 'counter', 'goc', 'lock'].includes(op.k) && result !== 'TransactionEndedError' && !refusedAlike) {
        problems.push(`${opKey(op.id)} (${op.k}) gave ${result}, not TransactionEndedError`);
      }
      for (const child of 'body' in op ? [op.body] : op.k === 'all' ? op.branches : []) visit(child, inSpawn || op.k === 'spawn');
    }
  };
  for (const request of program.requests) visit(request, false);
  return problems;
}
