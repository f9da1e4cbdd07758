/**
 * Runs a program in the model under one schedule at a time, and searches the schedules (every interleaving the
 * library's rules allow, plus the races PostgreSQL leaves open) for one that explains what the real run
 * observed. Stateless search: each schedule is replayed from the start under a list of choices, depth first,
 * cutting a schedule as soon as it disagrees with the observation (an operation's outcome, a committed row).
 */
import { LibraryModel, type AbortFlag, type Ctx, type Gen, type Step } from './library.js';
import type { Observation } from './observation.js';
import { analyse } from './generator.js';
import { children, counterKey, gocKey, onDataSource, opKey, requestKey, rowLabel, walk, type Op, type Program } from './program.js';
import { Database, fail, MODEL_ERRORS, ModelError, type Conn, type DatabaseState, type Write } from './world.js';

interface Thread {
  id: number;
  gen: Gen;
  /** The operations this thread runs itself (not those of the branches and spawns it starts). */
  ops: readonly number[];
  wait?: () => boolean;
  done: boolean;
  error?: ModelError;
  doneAt: number;
  lastStep: number;
  onDone?: (error?: ModelError) => void;
}

/** Something that can move: a thread, a connection answering its current statement, a client noticing a kill. */
interface Actor {
  step(): void;
}

interface Choice {
  pick: number;
  n: number;
  /** Alternatives up to this index cost no discrepancy (the heuristic's pick, and carrying on with the last actor). */
  free: number;
}

/** One complete run of the model: every operation's outcome and the database it leaves. */
export interface ModelOutcome {
  results: Record<string, string>;
  state: DatabaseState;
}

const MAX_STEPS = 20_000;

/** One replay of the program under the choices given (extended with first alternatives past their end). */
class Execution {
  readonly db: Database;
  private readonly lib: LibraryModel;
  private readonly threads: Thread[] = [];
  readonly results = new Map<string, string>();
  mismatch?: string;
  /** How many choices this run made (the ones past it in `choices` belong to an earlier run). */
  made = 0;
  /** How many observed results this run matched before it stopped (for reporting the closest schedule). */
  matched = 0;
  /** The actor that moved last: carrying on with it is as likely as the heuristic's pick. */
  private lastActor?: Actor;
  private readonly actorsOf = new Map<object, Actor>();
  /** The start (`s<id>`) and end (`e<id>`) events of operations this run has passed. */
  private readonly emitted = new Set<string>();
  /** Position of each event in the observed run (the search tries schedules in that order first). */
  private readonly position = new Map<string, number>();

  constructor(
    private readonly program: Program,
    private readonly observed: Observation | undefined,
    private readonly choices: Choice[],
    private readonly compare: (value: string) => string = (value) => value,
    /** Results not compared (outcomes no schedule gives: the search asks what the model gives there instead). */
    private readonly open: ReadonlySet<string> = new Set(),
  ) {
    this.db = new Database(
      (n) => this.choose(n),
      (writes) => this.committed(writes),
    );
    this.lib = new LibraryModel(this.db);
    observed?.trace.forEach((event, index) => {
      if (!this.position.has(event)) this.position.set(event, index);
    });
  }

  private choose(n: number, free = 0): number {
    if (n <= 1) return 0;
    const index = this.made++;
    if (index < this.choices.length) {
      const choice = this.choices[index]!;
      if (choice.n !== n) throw new Error(`model replay diverged at choice ${index}: ${choice.n} vs ${n} alternatives`);
      return choice.pick;
    }
    this.choices.push({ pick: 0, n, free });
    return 0;
  }

  private record(key: string, value: string): void {
    if (this.results.has(key)) throw new Error(`model recorded ${key} twice`);
    value = this.compare(value);
    this.results.set(key, value);
    if (!this.observed || this.mismatch || this.open.has(key)) return;
    const seen = this.observed.results[key];
    if (seen !== value) this.mismatch = `${key}: the model's schedule gives ${value}, the run gave ${seen ?? 'nothing'}`;
    else this.matched++;
  }

  // Rows are never deleted and counters only grow: a commit the run does not show cannot be part of an explanation.
  private committed(writes: readonly Write[]): void {
    if (!this.observed || this.mismatch) return;
    for (const write of writes) {
      if (write.kind === 'row' && !this.observed.rows.includes(write.label)) this.mismatch = `row ${write.label} committed in the model, absent in the run`;
      if (write.kind === 'goc' && !(write.key in this.observed.goc)) this.mismatch = `get-or-create row ${write.key} committed in the model, absent in the run`;
      if (write.kind === 'counter' && this.db.counters.get(write.key)! > (this.observed.counters[write.key] ?? 0)) {
        this.mismatch = `counter ${write.key} reached ${this.db.counters.get(write.key)} in the model, the run ended at ${this.observed.counters[write.key] ?? 0}`;
      }
    }
  }

  /** Runs to the end of the schedule: true when it explains the observation (or, without one, when it completes). */
  run(): boolean {
    const root: Ctx = { scopes: {}, sessions: {}, chain: undefined };
    this.program.requests.forEach((block, index) =>
      this.spawn(block, this.block(block, root), (error) => this.record(requestKey(index), error ? error.name : 'ok')),
    );
    for (;;) {
      if (this.mismatch) return false;
      const actors = this.actors();
      if (actors.length === 0) {
        if (this.threads.some((t) => !t.done)) {
          this.mismatch = 'the model hangs in this schedule (no thread can go on)';
          return false;
        }
        return this.finalCheck();
      }
      const pick = actors.length === 1 ? 0 : this.choose(actors.length, this.lastActor !== undefined && actors.indexOf(this.lastActor) > 0 ? 1 : 0);
      this.lastActor = actors[pick]!;
      this.lastActor.step();
      if (++this.db.steps > MAX_STEPS) throw new Error('model ran too many steps');
    }
  }

  // What can move now, most likely first: the thread (or the connection serving the thread) whose next event
  // came earliest in the observed run; without an observation, threads (the JavaScript that runs between
  // awaits) before PostgreSQL answering statements in the order they were sent. Clients noticing killed
  // connections come last.
  private actors(): Actor[] {
    const threads = this.threads.filter((t) => !t.done && (!t.wait || t.wait()));
    const conns = this.db.conns.filter((c) => this.db.runnable(c));
    const ranked = [
      ...threads.map((t) => ({ rank: this.rank(t), order: 0, since: t.lastStep, id: t.id, actor: this.actor(t, () => this.stepThread(t)) })),
      ...conns.map((c) => ({ rank: this.rank(c.running!.owner as Thread | undefined), order: 1, since: c.runningSince, id: c.id, actor: this.actor(c, () => this.db.step(c)) })),
    ].sort((a, b) => a.rank - b.rank || a.order - b.order || a.since - b.since || a.id - b.id);
    const notices = this.db.conns.filter((c) => c.lost && !c.noticed && !c.closed).map((c: Conn) => this.actor(c.root, () => this.db.notice(c)));
    const list = [...ranked.map((r) => r.actor), ...notices];
    // The last actor goes second: carrying on with it costs no discrepancy.
    const last = this.lastActor ? list.indexOf(this.lastActor) : -1;
    if (last > 1) list.splice(1, 0, ...list.splice(last, 1));
    return list;
  }

  // One actor object per thread or connection, so "the last actor" can be found again.
  private actor(key: object, step: () => void): Actor {
    let actor = this.actorsOf.get(key);
    if (!actor) this.actorsOf.set(key, (actor = { step }));
    return actor;
  }

  // The observed position of the earliest event this thread has yet to pass.
  private rank(thread: Thread | undefined): number {
    if (!thread || this.position.size === 0) return 0;
    let best = Infinity;
    for (const id of thread.ops) {
      for (const event of [`s${id}`, `e${id}`]) {
        if (this.emitted.has(event)) continue;
        const at = this.position.get(event);
        if (at !== undefined && at < best) best = at;
        break;
      }
    }
    return best;
  }

  private stepThread(thread: Thread): void {
    thread.lastStep = this.db.steps;
    thread.wait = undefined;
    this.db.owner = thread;
    let step: IteratorResult<Step, unknown>;
    try {
      step = thread.gen.next();
    } catch (error) {
      if (!(error instanceof ModelError)) throw error;
      this.finish(thread, error);
      return;
    }
    if (step.done) this.finish(thread);
    else thread.wait = step.value.wait;
  }

  private finish(thread: Thread, error?: ModelError): void {
    thread.done = true;
    thread.error = error;
    thread.doneAt = this.db.steps;
    thread.onDone?.(error);
  }

  private spawn(block: readonly Op[], gen: Gen, onDone?: (error?: ModelError) => void): Thread {
    const thread: Thread = { id: this.threads.length, gen, ops: ownOps(block), done: false, doneAt: 0, lastStep: this.db.steps, onDone };
    this.threads.push(thread);
    return thread;
  }

  // An un-awaited async call runs at once, up to its first await, before its caller goes on: it may take a branch
  // lock (or fail) before the caller's next call does. So the new thread takes its first step now, inside its
  // caller's; the library model pauses at every await that precedes something another branch can see, so that step
  // does no more than the real call does by then. How the call settles is another matter (see settlesLater).
  // (Promise.all branches start so too, in order; the model still lets them start in any order, which allows more.)
  private start(thread: Thread): Thread {
    const caller = this.db.owner;
    thread.gen = settlesLater(thread.gen);
    this.stepThread(thread);
    this.db.owner = caller;
    return thread;
  }

  private finalCheck(): boolean {
    if (!this.observed) return true;
    for (const key of Object.keys(this.observed.results)) {
      if (!this.results.has(key) && !this.open.has(key)) {
        this.mismatch = `${key}: the run gave ${this.observed.results[key]}, the model never runs it in this schedule`;
        return false;
      }
    }
    const state = this.db.state();
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    const sorted = (record: Record<string, number>) => Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
    if (!same(state.rows, this.observed.rows)) this.mismatch = `rows: model ${JSON.stringify(state.rows)}, run ${JSON.stringify(this.observed.rows)}`;
    else if (!same(sorted(state.counters), sorted(this.observed.counters))) {
      this.mismatch = `counters: model ${JSON.stringify(state.counters)}, run ${JSON.stringify(this.observed.counters)}`;
    } else if (!same(sorted(state.goc), sorted(this.observed.goc))) {
      this.mismatch = `get-or-create rows: model ${JSON.stringify(state.goc)}, run ${JSON.stringify(this.observed.goc)}`;
    }
    return this.mismatch === undefined;
  }

  outcome(): ModelOutcome {
    return { results: Object.fromEntries([...this.results].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))), state: this.db.state() };
  }

  // ---- the program's operations, as the runner executes them

  private *block(ops: readonly Op[], ctx: Ctx): Gen<void> {
    for (const op of ops) yield* this.op(op, ctx);
  }

  private *settle(op: Op, work: Gen): Gen<void> {
    let value: unknown;
    try {
      value = yield* work;
    } catch (error) {
      if (error instanceof ModelError) this.record(opKey(op.id), error.name);
      throw error;
    }
    this.record(opKey(op.id), typeof value === 'string' ? value : 'ok');
  }

  private *op(op: Op, ctx: Ctx): Gen<void> {
    this.emitted.add(`s${op.id}`);
    try {
      yield* this.opBody(op, ctx);
    } finally {
      if (op.k !== 'spawn') this.emitted.add(`e${op.id}`);
    }
  }

  private *opBody(op: Op, ctx: Ctx): Gen<void> {
    switch (op.k) {
      case 'tx':
        return yield* this.settle(
          op,
          this.lib.run(ctx, op.ds, { propagation: op.propagation, isolation: op.isolation, readOnly: op.readOnly }, (inner) => this.block(op.body, inner)),
        );
      case 'insert':
        return yield* this.settle(op, this.lib.statement(ctx, op.ds, { kind: 'insert', label: rowLabel(op.id) }));
      case 'bad':
        return yield* this.settle(op, this.lib.statement(ctx, op.ds, { kind: 'bad' }));
      case 'throw':
        throw fail('ProgramError');
      case 'catch':
        try {
          yield* this.block(op.body, ctx);
        } catch (error) {
          if (!(error instanceof ModelError)) throw error;
          this.record(opKey(op.id), `caught:${error.name}`);
          return;
        }
        this.record(opKey(op.id), 'ok');
        return;
      case 'all':
        return yield* this.settle(op, this.all(op, ctx));
      case 'spawn':
        this.start(
          this.spawn(op.body, this.block(op.body, { ...ctx, detachedAt: ctx.chain }), (error) => {
            this.emitted.add(`e${op.id}`);
            this.record(opKey(op.id), error ? error.name : 'ok');
          }),
        );
        return;
      case 'lock': {
        const abort = op.abort ? this.abortFlag() : undefined;
        const request = { key: op.key, scope: op.scope, propagation: op.propagation, nowait: op.nowait ?? false, shared: op.shared ?? false, abort };
        return yield* this.settle(op, this.lib.advisoryLock(ctx, op.ds, request, (inner) => this.lockBody(op, inner)));
      }
      case 'manual':
        // Its statements go through its runner, on its DataSource, whatever DataSource the operation names.
        return yield* this.settle(op, this.lib.manual(ctx, op.ds, op.isolation, op.end, (inner) => this.block(op.body.map((o) => ('ds' in o ? { ...o, ds: op.ds } : o)), inner)));
      case 'dstx':
        return yield* this.settle(op, this.lib.dataSourceTransaction(ctx, op.ds, op.isolation, (inner) => this.block(op.body, inner)));
      case 'stray':
        return yield* this.settle(op, this.lib.strayEnd(ctx, op.ds));
      case 'counter':
        return yield* this.settle(op, this.lib.counter(ctx, op.ds, op.key, op.by, op.max));
      case 'goc':
        return yield* this.settle(op, this.lib.getOrCreate(ctx, op.ds, op.key, op.update));
      case 'pause':
        yield {};
        return;
      case 'kill': {
        const scope = ctx.scopes[op.ds];
        yield {};
        if (scope) this.db.kill(scope.conn);
        yield {};
        return;
      }
    }
  }

  // A lock call's signal: it may abort at any moment from the call on (the runner aborts it a few ms after).
  private abortFlag(): AbortFlag {
    const flag: AbortFlag = { aborted: false };
    this.spawn(
      [],
      (function* () {
        yield {};
        flag.aborted = true;
      })(),
    );
    return flag;
  }

  // The body of a lock call, then the runner's probe statement (whose outcome is only used by the overlap detector).
  private *lockBody(op: Extract<Op, { k: 'lock' }>, ctx: Ctx): Gen<void> {
    try {
      yield* this.block(op.body, ctx);
    } finally {
      if (op.scope === 'transaction') {
        try {
          yield* this.lib.statement(ctx, op.ds, { kind: 'probe' });
        } catch (error) {
          if (!(error instanceof ModelError)) throw error;
        }
      }
    }
  }

  private *all(op: Extract<Op, { k: 'all' }>, ctx: Ctx): Gen<void> {
    const branches = op.branches.map((branch) => this.spawn(branch, this.block(branch, ctx)));
    if (op.settle) {
      yield { wait: () => branches.every((t) => t.done) };
      return;
    }
    yield { wait: () => branches.every((t) => t.done) || branches.some((t) => t.error) };
    const failed = branches.filter((t) => t.error).sort((a, b) => a.doneAt - b.doneAt)[0];
    if (failed) throw failed.error;
  }
}

/**
 * `gen`, except that when it ends in its first step, the thread ends in a step of its own. A call that throws (or
 * returns) before its first real await still settles its promise only some microtasks later, after the layers of
 * async functions it went through, while its caller goes on (Promise.all, for one, reports whichever branch's
 * rejection got through first): when the call's first step runs inside its caller's (start), its end must not be.
 */
function* settlesLater<T>(gen: Gen<T>): Gen<T> {
  let first: IteratorResult<Step, T>;
  try {
    first = gen.next();
  } catch (error) {
    yield {};
    throw error;
  }
  if (first.done) {
    yield {};
    return first.value;
  }
  yield first.value;
  return yield* gen;
}

/** The operations a thread running `block` runs itself: not inside the branches and spawns it starts. */
function ownOps(block: readonly Op[]): number[] {
  const ids: number[] = [];
  const visit = (ops: readonly Op[]) => {
    for (const op of ops) {
      ids.push(op.id);
      if (op.k !== 'all' && op.k !== 'spawn') for (const child of children(op)) visit(child);
    }
  };
  visit(block);
  return ids;
}

/** The model's verdict on one observation. */
export interface Verdict {
  /** true: a schedule explains it; false: none does; 'unknown': the search budget ran out first. */
  explained: boolean | 'unknown';
  schedules: number;
  /** When unexplained: why the schedule that matched the most outcomes failed. */
  reason?: string;
  /** The outcome of that closest schedule (for the report); when explained, of the schedule that explains it. */
  closest?: ModelOutcome;
  /** Results of the run that no schedule gives (errors the model never raises): unexplained without a full search. */
  impossible?: string[];
}

/**
 * Searches for a schedule of the model that explains `observed`: limited discrepancy search around the order
 * the run itself showed (schedules that leave that order in at most 0, 1, 2... places), then every schedule.
 */
export function explain(
  program: Program,
  observed: Observation,
  budget: { schedules: number; ms: number },
  compare: (value: string) => string = (value) => value,
): Verdict {
  const impossible = outcomesNoScheduleGives(observed, compare);
  if (impossible.length > 0) return unexplainable(program, observed, impossible, budget, compare);
  // Requests that share no lock, row or key (and no SERIALIZABLE predicate locks) cannot affect each other:
  // each group is explained on its own, which spares the search their interleavings.
  const groups = independentGroups(program);
  if (groups.length <= 1) return search(program, observed, budget, compare);
  const deadline = Date.now() + budget.ms;
  let schedules = 0;
  let unknown: Verdict | undefined;
  for (const group of groups) {
    const part = restrict(program, observed, group);
    const verdict = search(part.program, part.observed, { schedules: budget.schedules - schedules, ms: Math.max(1, deadline - Date.now()) }, compare);
    schedules += verdict.schedules;
    if (verdict.explained === false) return { ...verdict, schedules };
    if (verdict.explained === 'unknown') unknown ??= verdict;
  }
  return unknown ? { ...unknown, schedules } : { explained: true, schedules };
}

/**
 * The results of `observed` that no schedule of the model gives: errors the model never raises (a raw driver error,
 * a TypeORM error the library should have turned into its own). Nothing but `ok...` outcomes and the errors in
 * MODEL_ERRORS (plain or caught, after `compare`) can match, so no search is needed to know.
 */
export function outcomesNoScheduleGives(observed: Observation, compare: (value: string) => string = (value) => value): string[] {
  const possible = new Set(MODEL_ERRORS.flatMap((name) => [compare(name), compare(`caught:${name}`)]));
  return Object.entries(observed.results)
    .filter(([, value]) => !value.startsWith('ok') && !possible.has(value))
    .map(([key]) => key);
}

// Enough for the short search of unexplainable(): the observed order usually explains the rest at once.
const SHORT_SEARCH = { schedules: 2_000, ms: 300 };

/**
 * The verdict on a run with results no schedule gives: unexplained, without the full search that would have to try
 * every schedule to prove it (on a build that raises such errors, most programs used up the search budget so, and
 * were counted as explained). A short search of the first such result's requests, with those results left open,
 * finds what the model gives there instead (in the schedule closest to the run), for the report and divergenceKind().
 */
function unexplainable(
  program: Program,
  observed: Observation,
  impossible: readonly string[],
  budget: { schedules: number; ms: number },
  compare: (value: string) => string,
): Verdict {
  const key = impossible[0]!;
  const group = independentGroups(program).find((requests) => requests.includes(requestOf(program, key)));
  const part = group ? restrict(program, observed, group) : { program, observed };
  const short = { schedules: Math.min(budget.schedules, SHORT_SEARCH.schedules), ms: Math.min(budget.ms, SHORT_SEARCH.ms) };
  const verdict = search(part.program, part.observed, short, compare, new Set(impossible));
  const seen = observed.results[key];
  const gives = verdict.closest?.results[key];
  const reason = gives === undefined ? `${key}: the run gave ${seen}, which no schedule of the model gives` : `${key}: the model's schedule gives ${gives}, the run gave ${seen}`;
  return { explained: false, schedules: verdict.schedules, reason, closest: verdict.closest, impossible: [...impossible] };
}

// The request a result key (`op<id>` or `req<index>`) belongs to.
function requestOf(program: Program, key: string): number {
  if (key.startsWith('req')) return Number(key.slice('req'.length));
  const id = Number(key.slice('op'.length));
  return program.requests.findIndex((block) => [...walk(block)].some((op) => op.id === id));
}

/** Groups of request indices that share a resource, directly or through other requests. */
export function independentGroups(program: Program): number[][] {
  const parent = program.requests.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i]!)));
  const join = (a: number, b: number) => (parent[find(a)] = find(b));
  const owner = new Map<string, number>();
  const { uses } = analyse(program);
  for (const use of uses) {
    const first = owner.get(use.resource);
    if (first === undefined) owner.set(use.resource, use.context.request);
    else join(first, use.context.request);
  }
  let serializable: number | undefined;
  program.requests.forEach((block, index) => {
    for (const op of walk(block)) {
      if (op.k === 'tx' && op.isolation === 'SERIALIZABLE') {
        if (serializable === undefined) serializable = index;
        else join(serializable, index);
        break;
      }
    }
  });
  const groups = new Map<number, number[]>();
  program.requests.forEach((_, i) => groups.set(find(i), [...(groups.get(find(i)) ?? []), i]));
  return [...groups.values()];
}

// The program with only the requests of `group` (the others empty), and the part of the observation they made.
function restrict(program: Program, observed: Observation, group: readonly number[]): { program: Program; observed: Observation } {
  const ids = new Set<number>();
  const names = new Set<string>();
  const requests = program.requests.map((block, index) => {
    if (!group.includes(index)) return [];
    for (const op of walk(block)) {
      ids.add(op.id);
      if (op.k === 'insert' || op.k === 'bad') names.add(onDataSource(op.ds, rowLabel(op.id)));
      if (op.k === 'counter') names.add(onDataSource(op.ds, counterKey(op.key)));
      if (op.k === 'goc') names.add(onDataSource(op.ds, gocKey(op.key)));
    }
    return block;
  });
  const results: Record<string, string> = {};
  program.requests.forEach((_, index) => (results[requestKey(index)] = group.includes(index) ? observed.results[requestKey(index)]! : 'ok'));
  for (const [key, value] of Object.entries(observed.results)) if (key.startsWith('op') && ids.has(Number(key.slice(2)))) results[key] = value;
  const pick = (record: Record<string, number>) => Object.fromEntries(Object.entries(record).filter(([key]) => names.has(key)));
  return {
    program: { requests },
    observed: {
      ...observed,
      results,
      rows: observed.rows.filter((row) => names.has(row)),
      counters: pick(observed.counters),
      goc: pick(observed.goc),
      trace: observed.trace.filter((event) => ids.has(Number(event.slice(1)))),
    },
  };
}

function search(
  program: Program,
  observed: Observation,
  budget: { schedules: number; ms: number },
  compare: (value: string) => string,
  open: ReadonlySet<string> = new Set(),
): Verdict {
  const deadline = Date.now() + budget.ms;
  let best: { matched: number; reason: string; outcome: ModelOutcome } | undefined;
  let schedules = 0;
  for (const limit of [0, 1, 2, 3, Infinity]) {
    const choices: Choice[] = [];
    let widest = 0;
    for (;;) {
      schedules++;
      const execution = new Execution(program, observed, choices, compare, open);
      if (execution.run()) return { explained: true, schedules, closest: execution.outcome() };
      if (!best || execution.matched > best.matched) best = { matched: execution.matched, reason: execution.mismatch!, outcome: execution.outcome() };
      widest = Math.max(widest, execution.made);
      if (schedules >= budget.schedules || Date.now() > deadline) return { explained: 'unknown', schedules, reason: best.reason, closest: best.outcome };
      if (!backtrack(choices, execution.made, limit)) break;
    }
    // Once no schedule needed more discrepancies than allowed, every schedule has been tried.
    if (limit >= widest) return { explained: false, schedules, reason: best!.reason, closest: best!.outcome };
  }
  throw new Error('unreachable');
}

/** Every distinct outcome the model allows for `program` (at most `limit`, searching at most `schedules` schedules). */
export function allowedOutcomes(
  program: Program,
  limit = 50,
  schedules = 200_000,
  compare: (value: string) => string = (value) => value,
  ms = Infinity,
): { outcomes: ModelOutcome[]; complete: boolean } {
  const choices: Choice[] = [];
  const seen = new Map<string, ModelOutcome>();
  const deadline = Date.now() + ms;
  for (let n = 1; n <= schedules && Date.now() <= deadline; n++) {
    const execution = new Execution(program, undefined, choices, compare);
    if (execution.run()) {
      const outcome = execution.outcome();
      seen.set(JSON.stringify(outcome), outcome);
      if (seen.size >= limit) return { outcomes: [...seen.values()], complete: false };
    }
    if (!backtrack(choices, execution.made)) return { outcomes: [...seen.values()], complete: true };
  }
  return { outcomes: [...seen.values()], complete: false };
}

// Moves to the next schedule, depth first: the last choice with an alternative left takes it, as long as the
// schedule leaves the heuristic's first pick in at most `limit` places.
function backtrack(choices: Choice[], made: number, limit = Infinity): boolean {
  choices.length = Math.min(choices.length, made);
  const costly = (c: Choice) => (c.pick > c.free ? 1 : 0);
  for (;;) {
    while (choices.length > 0 && choices[choices.length - 1]!.pick + 1 >= choices[choices.length - 1]!.n) choices.pop();
    if (choices.length === 0) return false;
    const last = choices[choices.length - 1]!;
    const before = choices.reduce((n, c) => n + costly(c), 0) - costly(last);
    if (before + (last.pick + 1 > last.free ? 1 : 0) <= limit) {
      last.pick++;
      return true;
    }
    choices.pop();
  }
}
