import { mkdir, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { dirname } from 'node:path';

/** Self time of one function (or of one area of the stack, such as the pg driver) in a CPU profile. */
export interface FrameStat {
  frame: string;
  area: string;
  /** The finer layer (issue 25's list: decorators, AsyncLocalStorage, scope queue, ... pg), see layerOf(). */
  layer: string;
  selfMs: number;
}

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
}

// 100 µs between samples: fine enough for calls that take a few µs each, and light enough to keep the shape.
const SAMPLING_INTERVAL_US = 100;

/**
 * Runs `fn` under the V8 sampling profiler of this process and writes the profile to `file` (open it in
 * Chrome DevTools or speedscope). Returns `fn`'s result and the self time per function.
 */
export async function withCpuProfile<T>(file: string, fn: () => Promise<T>): Promise<{ result: T; profile: FrameStat[] }> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US });
    await session.post('Profiler.start');
    const result = await fn();
    const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: Profile };
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify(profile));
    return { result, profile: selfTimes(profile) };
  } finally {
    session.disconnect();
  }
}

function selfTimes(profile: Profile): FrameStat[] {
  const samples = profile.nodes.reduce((sum, node) => sum + (node.hitCount ?? 0), 0);
  const msPerSample = samples ? (profile.endTime - profile.startTime) / 1000 / samples : 0;
  return mergeFrames(
    profile.nodes
      .filter((node) => node.hitCount)
      .map((node) => {
        const { functionName, url, lineNumber } = node.callFrame;
        const where = url ? ` ${shortUrl(url)}:${lineNumber + 1}` : '';
        return { frame: `${functionName || '(anonymous)'}${where}`, area: areaOf(functionName, url), layer: layerOf(functionName, url), selfMs: node.hitCount! * msPerSample };
      }),
  );
}

/** Sums the self time of equal frames (from several nodes of one profile, or from several profiles). */
export function mergeFrames(frames: FrameStat[]): FrameStat[] {
  const merged = new Map<string, FrameStat>();
  for (const stat of frames) {
    const seen = merged.get(stat.frame);
    if (seen) seen.selfMs += stat.selfMs;
    else merged.set(stat.frame, { ...stat });
  }
  return [...merged.values()].sort((a, b) => b.selfMs - a.selfMs);
}

/** The top frames by self time and the time per area (ours, TypeORM, pg, Node, GC, idle), as text. */
export function formatProfile(frames: FrameStat[], top = 15): string {
  const total = frames.reduce((sum, f) => sum + f.selfMs, 0) || 1;
  const pct = (ms: number) => `${((ms / total) * 100).toFixed(1).padStart(5)}%`;
  const areas = mergeFrames(frames.map((f) => ({ frame: f.area, area: f.area, layer: f.layer, selfMs: f.selfMs })));
  return [
    `      by area: ${areas.map((a) => `${a.frame} ${pct(a.selfMs).trim()}`).join(', ')}`,
    `      top ${top} functions by self time:`,
    ...frames.slice(0, top).map((f) => `      ${pct(f.selfMs)}  ${f.frame}`),
  ].join('\n');
}

function areaOf(functionName: string, url: string): string {
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return 'V8 (program)';
  if (/node_modules\/(pg|pg-protocol|pg-pool|pg-types|pgpass|buffer-writer|packet-reader)\//.test(url)) return 'pg';
  if (url.includes('node_modules/typeorm/')) return 'typeorm';
  if (/node_modules\/(@nestjs|nestjs-cls|@nestjs-cls|rxjs|reflect-metadata)\//.test(url)) return 'nest';
  if (url.includes('/node_modules/')) return 'other packages';
  if (url.includes('/lib/')) return 'nestjs-txlock';
  if (url.includes('/bench/') || url.includes('/test/support/')) return 'bench';
  return 'node';
}

function shortUrl(url: string): string {
  const cwd = `file://${process.cwd()}/`;
  const path = url.startsWith(cwd) ? url.slice(cwd.length) : url;
  return path.replace(/^.*node_modules\//, '').replace(/^\.build\//, '');
}

/**
 * The layers a transaction's CPU is split into (issue 25), in the order the table shows them: the library's own
 * by file (the compiled file has the source's name), TypeORM's by directory, and the rest by where it runs.
 * Self time only: a layer's figure is what its own functions cost, not what they call.
 */
export const LAYERS = [
  'decorator wrappers',
  'AsyncLocalStorage runs',
  'scope queue',
  'branch locks',
  'held-lock bookkeeping',
  'option reading',
  'telemetry checks',
  'transaction core (host, connection, scopes)',
  'lock calls (service, keys, statements)',
  'other nestjs-txlock',
  'TypeORM QueryRunner',
  'TypeORM EntityManager',
  'TypeORM other',
  'pg',
  'Node: sockets, streams, timers',
  'Node: promises, microtasks, other',
  'GC',
  'V8 (program)',
  'Nest, other packages',
  'bench harness',
] as const;

const OURS_BY_FILE: Record<string, (typeof LAYERS)[number]> = {
  'transactional.decorator': 'decorator wrappers',
  'advisory-lock.decorator': 'decorator wrappers',
  'table-lock.decorator': 'decorator wrappers',
  'wrap-method': 'decorator wrappers',
  'scope-queue': 'scope queue',
  'branch-locks': 'branch locks',
  'await-chain': 'branch locks',
  'held-locks': 'held-lock bookkeeping',
  'session-locks': 'held-lock bookkeeping',
  'transaction.options': 'option reading',
  'lock.options': 'option reading',
  'option-keys': 'option reading',
  'isolation': 'option reading',
};

// The functions of transaction-scope.ts that only read or enter the AsyncLocalStorage.
const STORAGE_FUNCTIONS = new Set(['currentScope', 'runInScope', 'runOutsideTransactions', 'holdsConnection', 'runInCurrentTests']);

/** The layer of one profile frame (see LAYERS). */
export function layerOf(functionName: string, url: string): string {
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return 'V8 (program)';
  if (/node_modules\/(pg|pg-protocol|pg-pool|pg-types|pgpass|buffer-writer|packet-reader|postgres-[a-z]+)\//.test(url)) return 'pg';
  if (url.includes('node_modules/typeorm/')) {
    if (/typeorm\/(driver|query-runner)\//.test(url)) return 'TypeORM QueryRunner';
    if (/typeorm\/(entity-manager|repository)\//.test(url)) return 'TypeORM EntityManager';
    return 'TypeORM other';
  }
  if (url.includes('/node_modules/')) return 'Nest, other packages';
  if (url.includes('/lib/')) {
    const file = url.slice(url.lastIndexOf('/') + 1).replace(/\.(js|ts|cjs|mjs)$/, '');
    if (file === 'transaction-scope') return STORAGE_FUNCTIONS.has(functionName) ? 'AsyncLocalStorage runs' : 'transaction core (host, connection, scopes)';
    const layer = OURS_BY_FILE[file];
    if (layer) return layer;
    if (url.includes('/lib/telemetry/') || file === 'telemetry') return 'telemetry checks';
    if (url.includes('/lib/transaction/')) return 'transaction core (host, connection, scopes)';
    if (url.includes('/lib/locks/')) return 'lock calls (service, keys, statements)';
    return 'other nestjs-txlock';
  }
  if (url.includes('/bench/') || url.includes('/test/support/')) return 'bench harness';
  if (/^node:(async_hooks|internal\/async_hooks|internal\/async_local_storage)/.test(url)) return 'AsyncLocalStorage runs';
  if (/^node:(net|stream|dgram|dns|timers|internal\/(stream|net|timers|streams|stream_base_commons|dns))/.test(url) || functionName === 'writev' || functionName === 'writeBuffer' || functionName === 'writeUtf8String') {
    return 'Node: sockets, streams, timers';
  }
  return 'Node: promises, microtasks, other';
}

/**
 * CPU µs per operation by layer: the layer's share of the busy (non-idle) samples times the CPU the same rounds
 * used per operation (process.cpuUsage, so time the sampler cannot see, such as GC helper threads, is spread
 * in proportion).
 */
export function layerCosts(frames: FrameStat[], cpuUsPerOp: number): Record<string, number> {
  const busy = frames.filter((f) => f.layer !== 'idle');
  const total = busy.reduce((sum, f) => sum + f.selfMs, 0);
  const costs: Record<string, number> = {};
  if (!total) return costs;
  for (const f of busy) costs[f.layer] = (costs[f.layer] ?? 0) + (f.selfMs / total) * cpuUsPerOp;
  return costs;
}
