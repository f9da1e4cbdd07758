/**
 * How a (shrunk) program is shown: as the TypeScript a user would write against the library, annotated with what
 * the run and the model said, and as a ready-to-paste jest test (test/model/) that replays it.
 */
import type { Verdict } from './explore.js';
import type { Observation } from './observation.js';
import { counterKey, gocKey, lockKey, opKey, requestKey, rowLabel, type Op, type Program } from './program.js';

/** The program as code, each operation annotated with the run's outcome (and the model's, where they differ). */
export function programAsCode(program: Program, observed?: Observation, verdict?: Verdict): string {
  const lines: string[] = [];
  const note = (id: number | string) => {
    const key = typeof id === 'number' ? opKey(id) : id;
    const seen = observed?.results[key];
    const model = verdict?.closest?.results[key];
    if (seen === undefined && model === undefined) return '';
    const differs = model !== undefined && model !== seen;
    return `  // ${key}: ${seen ?? 'not run'}${differs ? `   <- the closest model schedule: ${model}` : ''}`;
  };
  const emit = (depth: number, text: string, id?: number | string) => lines.push(`${'  '.repeat(depth)}${text}${id === undefined ? '' : note(id)}`);
  const block = (ops: readonly Op[], depth: number) => {
    for (const op of ops) line(op, depth);
  };
  const options = (entries: Record<string, unknown>) => {
    const set = Object.entries(entries).filter(([, v]) => v !== undefined);
    return set.length === 0 ? '' : `{ ${set.map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(', ')} }`;
  };
  const line = (op: Op, depth: number) => {
    switch (op.k) {
      case 'tx': {
        const opts = options({ propagation: op.propagation, isolation: op.isolation, readOnly: op.readOnly });
        const call = op.via === 'host' ? `await ${op.ds}.tx.run(${opts ? `${opts}, ` : ''}async () => {` : `await ${op.ds}.decorated(@Transactional(${opts}), async () => {`;
        emit(depth, call, op.id);
        block(op.body, depth + 1);
        emit(depth, '});');
        return;
      }
      case 'insert':
        return emit(depth, `await ${op.ds}.items.insert({ label: '${rowLabel(op.id)}', v: 0 });`, op.id);
      case 'bad':
        return emit(depth, `await ${op.ds}.items.insert({ label: '${rowLabel(op.id)}', v: -1 }); // CHECK (v >= 0) refuses it`, op.id);
      case 'throw':
        return emit(depth, `throw new ProgramError(${op.id});`);
      case 'catch':
        emit(depth, 'try {', op.id);
        block(op.body, depth + 1);
        emit(depth, '} catch {}');
        return;
      case 'all':
        emit(depth, `await Promise.${op.settle ? 'allSettled' : 'all'}([`, op.id);
        for (const branch of op.branches) {
          emit(depth + 1, '(async () => {');
          block(branch, depth + 2);
          emit(depth + 1, '})(),');
        }
        emit(depth, ']);');
        return;
      case 'spawn':
        emit(depth, 'void (async () => { // not awaited', op.id);
        block(op.body, depth + 1);
        emit(depth, '})();');
        return;
      case 'manual': {
        emit(depth, `{ const qr = ${op.ds}.dataSource.createQueryRunner(); await qr.startTransaction(${op.isolation ? `'${op.isolation}'` : ''});`, op.id);
        emit(depth + 1, 'try {');
        for (const inner of op.body) {
          if (inner.k === 'insert' || inner.k === 'bad') emit(depth + 2, `await qr.manager.insert(Item, { label: '${rowLabel(inner.id)}', v: ${inner.k === 'bad' ? -1 : 0} });`, inner.id);
          else line(inner, depth + 2);
        }
        emit(depth + 2, `await qr.${op.end}Transaction();`);
        emit(depth + 1, '} catch (e) { await qr.rollbackTransaction(); throw e; } finally { await qr.release(); } }');
        return;
      }
      case 'dstx':
        emit(depth, `await ${op.ds}.dataSource.transaction(${op.isolation ? `'${op.isolation}', ` : ''}async () => {`, op.id);
        block(op.body, depth + 1);
        emit(depth, '});');
        return;
      case 'stray':
        return emit(depth, `await ${op.ds}.dataSource.createQueryRunner().${op.end}Transaction(); // no startTransaction()`, op.id);
      case 'lock': {
        const opts = options({ scope: op.scope === 'session' ? 'session' : undefined, propagation: op.propagation, nowait: op.nowait, shared: op.shared, signal: op.abort ? 'AbortSignal.timeout(3)' : undefined });
        emit(depth, `await ${op.ds}.locks.withAdvisoryLock('${lockKey(op.key)}', async () => {`, op.id);
        block(op.body, depth + 1);
        emit(depth, `}${opts ? `, ${opts}` : ''});`);
        return;
      }
      case 'counter':
        return emit(
          depth,
          op.max === undefined
            ? `await ${op.ds}.counters.increment('${counterKey(op.key)}', ${op.by});`
            : `await ${op.ds}.counters.tryIncrement('${counterKey(op.key)}', ${op.by}, { max: ${op.max} });`,
          op.id,
        );
      case 'goc':
        return emit(
          depth,
          op.update ? `await ${op.ds}.atomic.updateOrCreate(Goc, { key: '${gocKey(op.key)}' }, { v: ${op.id} });` : `await ${op.ds}.atomic.getOrCreate(Goc, { key: '${gocKey(op.key)}' });`,
          op.id,
        );
      case 'pause':
        return emit(depth, op.how === 'tick' ? 'await ticks(3);' : op.how === 'immediate' ? 'await new Promise(setImmediate);' : 'await sleep(1);');
      case 'kill':
        return emit(depth, `await killBackendOfCurrentTransaction(${op.ds}); // pg_terminate_backend`);
    }
  };
  program.requests.forEach((request, index) => {
    emit(0, `// request ${index}, concurrently with the others:`, requestKey(index));
    block(request, 1);
  });
  return lines.join('\n');
}

/** What the run left in the database, and what it broke outright. */
export function observationSummary(observed: Observation): string {
  const lines = [
    `rows committed: ${JSON.stringify(observed.rows)}`,
    `counters: ${JSON.stringify(observed.counters)}`,
    `get-or-create rows per key: ${JSON.stringify(observed.goc)}`,
  ];
  if (observed.overlaps.length > 0) lines.push(`LOCK OVERLAPS: ${observed.overlaps.join('; ')}`);
  if (observed.leaks.length > 0) lines.push(`LEFT BEHIND: ${observed.leaks.join('; ')}`);
  return lines.join('\n');
}

/** A jest test that replays the program on a real PostgreSQL until the model disagrees (or `attempts` pass). */
export function programAsTest(program: Program, title: string): string {
  const json = `{ requests: [\n${program.requests.map((request) => `    ${JSON.stringify(request)},`).join('\n')}\n  ] }`;
  return [
    `// Paste into test/model/found-programs.spec.ts (the describe block there has useModelChecker()).`,
    `it(${JSON.stringify(title)}, async () => {`,
    `  const program: Program = ${json};`,
    `  await checker.expectExplained(program, { attempts: 25 });`,
    `});`,
  ].join('\n');
}
