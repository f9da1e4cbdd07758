/**
 * The reference model's world: PostgreSQL as the programs use it (committed rows, counters, get-or-create keys,
 * advisory and row locks, savepoints, aborted transactions, killed backends) and the library's connections
 * with their turn-taking queues (README: "Concurrency inside one transaction"). Plain data and small rules;
 * `library.ts` drives it the way the library's documented semantics say, `explore.ts` picks the interleaving.
 */
import type { DataSourceName, Isolation } from './program.js';

/**
 * Every error the model can raise, by the name it is compared with (`QueryFailedError:<SQLSTATE>` for statements).
 * Listed (and typed) so that an observed error outside it is known to be unexplainable before any search: no schedule
 * can give it (explore.ts, outcomesNoScheduleGives).
 */
export const MODEL_ERRORS = [
  'ProgramError',
  'TransactionEndedError',
  'TransactionRequiredError',
  'TransactionNotAllowedError',
  'RollbackOnlyError',
  'CommitOutcomeUnknownError',
  'ConnectionLostError',
  'InvalidOptionError',
  'LockNotAcquiredError',
  'LockLostError',
  'GetOrCreateSerializationError',
  'TransactionSerializationError',
  'ReadOnlyTransactionError',
  'WeakerIsolationError',
  'LockAbortedError',
  'StrayTransactionEndError',
  'TransactionNotStartedError',
  'QueryFailedError:23514',
  'QueryFailedError:25006',
  'QueryFailedError:25P02',
  'QueryFailedError:40001',
] as const;
export type ModelErrorName = (typeof MODEL_ERRORS)[number];

/** An error in the model: compared with the real one by name. */
export class ModelError {
  constructor(readonly name: ModelErrorName) {}
}
export const fail = (name: ModelErrorName): ModelError => new ModelError(name);

/** A database effect that becomes visible to others when its transaction commits. */
export type Write = { kind: 'row'; label: string } | { kind: 'counter'; key: string; by: number } | { kind: 'goc'; key: string };

/** A lock held in PostgreSQL: advisory (`a:<key>`) or a row/unique-key lock (`c:<key>`, `g:<key>`). */
interface Holder {
  resource: string;
  conn: Conn;
  /** The scope it was taken in (transaction-level locks are released when that savepoint rolls back); none for session locks. */
  scope?: Scope;
  shared: boolean;
}

/**
 * One frame on a connection: the transaction itself (root), a NESTED savepoint, or the pinned connection of a
 * session-scope lock call. States and refusals as in the README: open, then ending (nothing new accepted), then ended.
 */
export class Scope {
  state: 'open' | 'ending' | 'ended' = 'open';
  rollbackOnly = false;
  writes: Write[] = [];
  /** The library's record of the advisory keys taken in this frame (what lets it skip a lock statement). */
  readonly taken = new Map<string, boolean>();
  /** BranchLocks of the transaction (root scope only). */
  branch?: BranchLocks;
  /** Detached lock calls made to wait for their turn in this frame (or one inside it): it does not end before them. */
  keepers = 0;
  /**
   * A savepoint's SAVEPOINT was sent and taken: it is held back until the first statement inside it, and refused
   * with that statement when the transaction is already aborted (then it never existed, and its end sends nothing).
   */
  sent = false;

  constructor(
    readonly conn: Conn,
    readonly kind: 'transaction' | 'savepoint' | 'session lock',
    readonly parent?: Scope,
  ) {
    if (!parent) this.branch = new BranchLocks();
  }

  get root(): Scope {
    return this.parent ? this.parent.root : this;
  }
  get ended(): boolean {
    return this.state === 'ended';
  }
  close(): void {
    if (this.state === 'open') this.state = 'ending';
  }
  finish(): void {
    this.state = 'ended';
  }
  encloses(scope: Scope): boolean {
    for (let s: Scope | undefined = scope; s; s = s.parent) if (s === this) return true;
    return false;
  }
  /** The error for a new call in this scope (TransactionEndedError), unless it and every enclosing scope are open. */
  refusal(ending = false): ModelError | undefined {
    for (let s: Scope | undefined = this; s; s = s.parent) {
      const accepted = s.state === 'open' || (ending && s === this && s.state === 'ending');
      if (!accepted) return fail('TransactionEndedError');
    }
    return undefined;
  }
  /** Keeps this scope and the ones around it open until the returned function is called (TransactionScope.keepOpen). */
  keepOpen(): () => void {
    for (let s: Scope | undefined = this; s; s = s.parent) s.keepers++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (let s: Scope | undefined = this; s; s = s.parent) s.keepers--;
    };
  }
  endedRefusal(): ModelError | undefined {
    for (let s: Scope | undefined = this; s; s = s.parent) if (s.state === 'ended') return fail('TransactionEndedError');
    return undefined;
  }
}

/** A promise in the model: settled by the connection's step that ran the work. */
export interface Handle {
  done: boolean;
  value?: unknown;
  error?: ModelError;
}

/** One piece of work waiting for, or having, its turn on a connection. */
export interface Work {
  scope: Scope;
  ending: boolean;
  /** True while PostgreSQL would make the statement wait (a lock another connection holds). */
  blocked(): boolean;
  /** Runs it, atomically, when its turn comes and it is not blocked: the value, or a thrown ModelError. */
  exec(): unknown;
  handle: Handle;
  /** A statement of the program or the library (not a savepoint or the transaction's end): see requireIsolation. */
  uses: boolean;
  /** When it was submitted, and by which model thread (for the search heuristic). */
  since: number;
  owner: unknown;
}

/** BranchLocks of one transaction or session: same-key branches take turns, re-entry by the call chain is let in. */
export class BranchLocks {
  readonly holds = new Set<Hold>();
  readonly waiting: { key: number; shared: boolean; ancestors: ReadonlySet<Hold>; hold: Hold; admitted: boolean }[] = [];

  admits(key: number, shared: boolean, ancestors: ReadonlySet<Hold>): boolean {
    for (const hold of this.holds) {
      if (ancestors.has(hold) || (shared && hold.shared)) continue;
      if (hold.key === key) return false;
    }
    return true;
  }

  admitWaiting(): void {
    for (let i = 0; i < this.waiting.length; i++) {
      const waiter = this.waiting[i]!;
      if (!this.admits(waiter.key, waiter.shared, waiter.ancestors)) continue;
      this.waiting.splice(i--, 1);
      this.holds.add(waiter.hold);
      waiter.admitted = true;
    }
  }
}

/** A call's hold on a key in BranchLocks; its call chain finds it as an ancestor. */
export interface Hold {
  key: number;
  shared: boolean;
  parent: Hold | undefined;
}

/** One pooled connection carrying a transaction, or a session-lock call's session. */
export class Conn {
  readonly root: Scope;
  top: Scope;
  readonly waiting: Work[] = [];
  running?: Work;
  runningSince = 0;
  refuseAll?: () => ModelError;
  /** BEGIN is held back until the first statement; `begun` once it was sent. */
  pending: boolean;
  begun = false;
  /** The transaction is open in PostgreSQL (begun, not yet committed, rolled back or killed). */
  dbOpen = false;
  /** The scope that was innermost when a statement failed (PostgreSQL aborted the transaction), if any. */
  abortedAt?: Scope;
  lost = false;
  noticed = false;
  closed = false;
  snapshot = 0;
  endedAt = Infinity;
  /** Tables touched (for SERIALIZABLE's predicate-lock conflicts). */
  readonly touched = new Set<string>();
  /** Some work of the transaction has had its turn: its isolation level can no longer be raised. */
  used = false;

  constructor(
    readonly id: number,
    readonly kind: 'tx' | 'session',
    readonly ds: DataSourceName,
    public isolation: Isolation,
    readonly readOnly: boolean,
  ) {
    this.root = new Scope(this, kind === 'tx' ? 'transaction' : 'session lock');
    this.top = this.root;
    this.pending = kind === 'tx';
  }
}

/** A nondeterministic choice among `n` alternatives (the search decides). */
export type Chooser = (n: number, why: string) => number;

/** What the model's database looks like after a program. */
export interface DatabaseState {
  rows: string[];
  counters: Record<string, number>;
  goc: Record<string, number>;
}

const STRENGTH: Record<Isolation, number> = { 'READ COMMITTED': 0, 'REPEATABLE READ': 1, SERIALIZABLE: 2 };

/**
 * A call inside `conn`'s transaction asks for `requested` (README: isolation of nested and joined calls): it runs at
 * the transaction's level, so a stronger one raises that level while nothing has run in it yet (the BEGIN is still
 * held back), and is refused with WeakerIsolationError once something has; never silently weaker.
 */
export function requireIsolation(conn: Conn, requested: Isolation | undefined): void {
  if (requested === undefined || STRENGTH[requested] <= STRENGTH[conn.isolation]) return;
  if (conn.used || conn.root.ended) throw fail('WeakerIsolationError');
  conn.isolation = requested;
}

/** The database and the connections. */
export class Database {
  readonly rows = new Set<string>();
  readonly counters = new Map<string, number>();
  readonly goc = new Set<string>();
  private readonly lastCommit = new Map<string, { seq: number; conn?: Conn }>();
  private readonly holders: Holder[] = [];
  readonly conns: Conn[] = [];
  seq = 0;
  steps = 0;
  /** The model thread running now (recorded on the work it submits). */
  owner: unknown;

  constructor(
    readonly choose: Chooser,
    /** Called after every commit with what it wrote, so the search can prune early. */
    private readonly committed: (writes: readonly Write[]) => void,
  ) {}

  open(kind: 'tx' | 'session', ds: DataSourceName, isolation: Isolation, readOnly: boolean): Conn {
    const conn = new Conn(this.conns.length + 1, kind, ds, isolation, readOnly);
    this.conns.push(conn);
    return conn;
  }

  state(): DatabaseState {
    const counters: Record<string, number> = {};
    for (const [key, value] of this.counters) counters[key] = value;
    const goc: Record<string, number> = {};
    for (const key of this.goc) goc[key] = 1;
    return { rows: [...this.rows].sort(), counters, goc };
  }

  // ---- the turn-taking queue of a connection (README: a statement runs only while its scope is the innermost open one)

  /** Submits work; throws the refusal when its scope (or one around it) is ending or ended, or the connection is unusable. */
  submit(conn: Conn, work: Work): Handle {
    const refusal = work.scope.refusal(work.ending) ?? conn.refuseAll?.();
    if (refusal) throw refusal;
    if (!conn.running && conn.waiting.length === 0 && work.scope === conn.top) this.start(conn, work);
    else {
      conn.waiting.push(work);
      this.next(conn);
    }
    return work.handle;
  }

  private start(conn: Conn, work: Work): void {
    conn.running = work;
    conn.runningSince = this.steps;
  }

  private next(conn: Conn): void {
    if (conn.running) return;
    for (let i = 0; i < conn.waiting.length; i++) {
      const work = conn.waiting[i]!;
      const refusal = work.scope.endedRefusal() ?? conn.refuseAll?.();
      if (refusal) {
        conn.waiting.splice(i--, 1);
        settle(work.handle, undefined, refusal);
      } else if (work.scope === conn.top) {
        conn.waiting.splice(i, 1);
        this.start(conn, work);
        return;
      } else if (work.ending && work.scope.encloses(conn.top)) {
        // Its scope ends while savepoints opened inside it are still open (un-awaited NESTED calls): roll those back first.
        this.start(conn, this.sweep(conn, work.scope));
        return;
      }
    }
  }

  /** True when the connection can run its current work now. */
  runnable(conn: Conn): boolean {
    return conn.running !== undefined && (conn.lost || !conn.running.blocked());
  }

  /** Runs the connection's current work (one atomic step of PostgreSQL). */
  step(conn: Conn): void {
    const work = conn.running!;
    if (work.uses) conn.used = true;
    let value: unknown;
    let error: ModelError | undefined;
    try {
      value = work.exec();
    } catch (thrown) {
      if (!(thrown instanceof ModelError)) throw thrown;
      error = thrown;
    }
    conn.running = undefined;
    settle(work.handle, value, error);
    this.next(conn);
  }

  /** Refuses all waiting and future work on `conn` with `error()`. */
  failQueue(conn: Conn, error: () => ModelError): void {
    conn.refuseAll ??= error;
    for (const work of conn.waiting.splice(0)) settle(work.handle, undefined, conn.refuseAll());
  }

  /** The client learns that its killed connection is gone (pg's 'error' event): everything queued fails. */
  notice(conn: Conn): void {
    conn.noticed = true;
    this.failQueue(conn, () => fail('ConnectionLostError'));
  }

  /** Sends a statement (with a held-back BEGIN): fails when the connection is lost, or the transaction aborted. */
  send(conn: Conn, options: { inAborted?: boolean; savepointEnd?: boolean } = {}): void {
    if (conn.lost) {
      this.notice(conn);
      throw fail('ConnectionLostError');
    }
    if (conn.pending) {
      conn.pending = false;
      conn.begun = true;
      conn.dbOpen = true;
      conn.snapshot = this.seq;
    }
    const refused = conn.abortedAt !== undefined && !options.inAborted;
    // The held-back SAVEPOINTs of the scopes this statement runs in go first: taken, or refused with it.
    if (!refused && !options.savepointEnd) for (let s: Scope | undefined = conn.top; s && s !== conn.root && !s.sent; s = s.parent) s.sent = true;
    if (refused) throw fail('QueryFailedError:25P02');
  }

  /**
   * A statement failed inside the transaction: PostgreSQL aborts it (or the innermost savepoint) at once, which
   * releases the locks taken there, and refuses every statement until a savepoint around the failure rolls back.
   */
  abort(conn: Conn, name: ModelErrorName): never {
    if (conn.kind === 'tx' && !conn.abortedAt) {
      const failed = conn.top;
      conn.abortedAt = failed;
      this.dropHolders((holder) => holder.conn === conn && holder.scope !== undefined && failed.encloses(holder.scope));
    }
    throw fail(name);
  }

  // ---- statements

  /** Work that runs one statement in `scope` (the innermost scope when it runs). */
  work(conn: Conn, scope: Scope, exec: () => unknown, blocked: () => boolean = () => false, ending = false, uses = true): Work {
    return { scope, ending, exec, blocked, uses, handle: { done: false }, since: this.steps, owner: this.owner };
  }

  /** The SAVEPOINT of a new NESTED scope. */
  savepoint(scope: Scope): Work {
    const conn = scope.conn;
    return this.work(
      conn,
      scope.parent!,
      () => {
        conn.top = scope; // held back until a statement runs inside it (send)
      },
      () => false,
      false,
      false,
    );
  }

  /** RELEASE SAVEPOINT: its writes and locks now belong to the parent. */
  release(scope: Scope): Work {
    const conn = scope.conn;
    return this.work(
      conn,
      scope,
      () => {
        if (scope.sent) this.send(conn, { savepointEnd: true }); // nothing is sent for a savepoint never taken
        const parent = scope.parent!;
        parent.writes.push(...scope.writes);
        scope.writes = [];
        for (const holder of this.holders) if (holder.scope === scope) holder.scope = parent;
        conn.top = parent;
        scope.finish();
      },
      () => false,
      true,
      false,
    );
  }

  /** ROLLBACK TO SAVEPOINT + RELEASE: undoes its work, releases the locks taken in it, clears an abort inside it. */
  rollbackTo(scope: Scope): Work {
    const conn = scope.conn;
    return this.work(
      conn,
      scope,
      () => {
        if (conn.lost && scope.sent) {
          // The library marks the connection broken and goes on; everything after it is refused.
          this.notice(conn);
        } else this.undo(conn, scope);
        conn.top = scope.parent!;
        scope.finish();
      },
      () => false,
      true,
      false,
    );
  }

  // The savepoints still open inside `scope` are rolled back (their calls are abandoned).
  private sweep(conn: Conn, scope: Scope): Work {
    const work = this.work(conn, scope, () => {
      let outermost = conn.top;
      while (outermost.parent !== scope) outermost = outermost.parent!;
      if (conn.lost && outermost.sent) {
        this.notice(conn);
        throw fail('ConnectionLostError');
      }
      this.undo(conn, outermost);
      for (let swept: Scope = conn.top; swept !== scope; swept = swept.parent!) swept.finish();
      conn.top = scope;
    });
    work.uses = false;
    // The sweep's own failure makes the connection unusable (the queue fails everything).
    const exec = work.exec;
    work.exec = () => {
      try {
        return exec();
      } catch (error) {
        if (error instanceof ModelError) this.failQueue(conn, () => error);
        throw error;
      }
    };
    return work;
  }

  private undo(conn: Conn, outermost: Scope): void {
    for (let s: Scope = conn.top; ; s = s.parent!) {
      s.writes = [];
      if (s === outermost) break;
    }
    this.dropHolders((holder) => holder.conn === conn && holder.scope !== undefined && outermost.encloses(holder.scope));
    if (conn.abortedAt && outermost.encloses(conn.abortedAt)) conn.abortedAt = undefined;
  }

  /** COMMIT: PostgreSQL answers a COMMIT of an aborted transaction with ROLLBACK (RollbackOnlyError). */
  commit(conn: Conn): Work {
    return this.work(
      conn,
      conn.root,
      () => {
        conn.pending = false;
        if (!conn.begun) return;
        if (conn.lost) {
          this.notice(conn);
          throw fail('CommitOutcomeUnknownError');
        }
        if (conn.abortedAt) {
          this.end(conn, false);
          conn.root.finish();
          throw fail('RollbackOnlyError');
        }
        if (this.serializableConflict(conn) && this.choose(2, 'serialization failure at COMMIT') === 1) {
          this.end(conn, false);
          conn.root.finish();
          throw fail('QueryFailedError:40001');
        }
        this.end(conn, true);
      },
      () => false,
      true,
      false,
    );
  }

  /** ROLLBACK (only if anything was sent). */
  rollback(conn: Conn): Work {
    return this.work(
      conn,
      conn.root,
      () => {
        conn.pending = false;
        if (!conn.begun) return;
        if (conn.lost) {
          this.notice(conn);
          throw fail('ConnectionLostError');
        }
        this.end(conn, false);
      },
      () => false,
      true,
      false,
    );
  }

  /** The connection goes back to the pool, or is destroyed (`broken`): PostgreSQL then rolls back and drops its locks. */
  close(conn: Conn): void {
    conn.root.close();
    conn.root.finish();
    this.failQueue(conn, () => fail('TransactionEndedError'));
    conn.closed = true;
    if (conn.dbOpen) this.end(conn, false);
    this.dropHolders((holder) => holder.conn === conn);
  }

  /** pg_terminate_backend: the server rolls the transaction back and drops every lock of the backend. */
  kill(conn: Conn): void {
    if (conn.closed || conn.lost) return;
    conn.lost = true;
    if (conn.dbOpen) this.end(conn, false);
    this.dropHolders((holder) => holder.conn === conn);
  }

  private end(conn: Conn, commit: boolean): void {
    const writes = conn.root.writes;
    conn.root.writes = [];
    conn.dbOpen = false;
    conn.endedAt = ++this.seq;
    if (commit) this.apply(writes, conn);
    this.dropHolders((holder) => holder.conn === conn && holder.scope !== undefined);
  }

  private apply(writes: readonly Write[], conn?: Conn): void {
    for (const write of writes) {
      if (write.kind === 'row') this.rows.add(write.label);
      else if (write.kind === 'counter') this.counters.set(write.key, (this.counters.get(write.key) ?? 0) + write.by);
      else this.goc.add(write.key);
      if (write.kind !== 'row') this.lastCommit.set(resourceOf(write), { seq: this.seq, conn });
    }
    this.committed(writes);
  }

  private dropHolders(which: (holder: Holder) => boolean): void {
    for (let i = this.holders.length - 1; i >= 0; i--) if (which(this.holders[i]!)) this.holders.splice(i, 1);
  }

  // ---- locks

  /** True when another connection holds `resource` in a mode that conflicts. */
  conflict(resource: string, conn: Conn | undefined, shared: boolean): boolean {
    return this.holders.some((h) => h.resource === resource && h.conn !== conn && !(shared && h.shared));
  }

  hold(resource: string, conn: Conn, scope: Scope | undefined, shared: boolean): void {
    this.holders.push({ resource, conn, scope, shared });
  }

  /** pg_advisory_unlock on a session: true when the session held it. */
  unlockSession(resource: string, conn: Conn): boolean {
    const index = this.holders.findIndex((h) => h.resource === resource && h.conn === conn && h.scope === undefined);
    if (index < 0) return false;
    this.holders.splice(index, 1);
    return true;
  }

  unlockAllSession(conn: Conn): void {
    this.dropHolders((h) => h.conn === conn && h.scope === undefined);
  }

  // ---- data

  /** This connection's uncommitted writes (its open scopes form a chain from the innermost to the root). */
  liveWrites(conn: Conn): Write[] {
    const writes: Write[] = [];
    for (let s: Scope | undefined = conn.top; s; s = s.parent) writes.push(...s.writes);
    return writes;
  }

  counterValue(key: string, conn?: Conn): number {
    let value = this.counters.get(key) ?? 0;
    if (conn) for (const w of this.liveWrites(conn)) if (w.kind === 'counter' && w.key === key) value += w.by;
    return value;
  }

  gocExists(key: string, conn?: Conn): boolean {
    return this.goc.has(key) || (conn !== undefined && this.liveWrites(conn).some((w) => w.kind === 'goc' && w.key === key));
  }

  /**
   * Under REPEATABLE READ/SERIALIZABLE, a write to a row another transaction committed after this one's snapshot (or
   * holds now) fails with SQLSTATE 40001; under SERIALIZABLE, predicate-lock conflicts with another SERIALIZABLE
   * transaction that touched the same table may fail any of its statements or its COMMIT. The model allows (never
   * requires) the failure in those cases: the real outcome depends on timing and page layout.
   */
  serializationMayFail(conn: Conn, resource: string): boolean {
    if (conn.isolation === 'READ COMMITTED') return false;
    const last = this.lastCommit.get(resource);
    if (last && last.conn !== conn && last.seq > conn.snapshot) return true;
    if (this.holders.some((h) => h.resource === resource && h.conn !== conn)) return true;
    return this.serializableConflict(conn);
  }

  serializableConflict(conn: Conn): boolean {
    if (conn.isolation !== 'SERIALIZABLE' || conn.touched.size === 0) return false;
    return this.conns.some(
      (other) =>
        other !== conn &&
        other.isolation === 'SERIALIZABLE' &&
        other.begun &&
        (other.dbOpen || other.endedAt > conn.snapshot) &&
        [...other.touched].some((table) => conn.touched.has(table)),
    );
  }

  /** Applies an autocommit statement's writes at once. */
  autocommit(writes: Write[]): void {
    this.seq++;
    this.apply(writes);
  }
}

function settle(handle: Handle, value: unknown, error: ModelError | undefined): void {
  handle.done = true;
  handle.value = value;
  handle.error = error;
}

/** The lock resource a write takes. */
export function resourceOf(write: Write): string {
  return write.kind === 'counter' ? `c:${write.key}` : write.kind === 'goc' ? `g:${write.key}` : `r:${write.label}`;
}
