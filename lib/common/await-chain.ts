import { Logger } from '@nestjs/common';

/**
 * Which code awaits the current async function, read from V8's async stack trace: the chain of async functions
 * (and Promise.all / allSettled / any, then-chains, `return promise`) that are suspended on the current one's
 * promise, up to the first promise that nobody awaits. It is how the library tells a call that its caller awaits
 * (a locked method calling another locked method: re-entry) from detached work the caller started and went on
 * without (an event listener, a timer, `void call()`), which JavaScript gives no other way to see.
 *
 * The walk starts at the async function that calls it, and sees links that already exist: call it after the
 * caller had a chance to await (after a macrotask boundary, see `nextMacrotask`), since `return promise` links
 * take a microtask each.
 */
export function awaitingFrames(): NodeJS.CallSite[] {
  const { prepareStackTrace, stackTraceLimit } = Error;
  Error.prepareStackTrace = (_error, sites) => sites;
  Error.stackTraceLimit = Infinity;
  try {
    const holder: { stack?: NodeJS.CallSite[] } = {};
    Error.captureStackTrace(holder);
    // V8 formats the stack on first access: it must happen while our prepareStackTrace is installed.
    return holder.stack ?? [];
  } finally {
    Error.prepareStackTrace = prepareStackTrace;
    Error.stackTraceLimit = stackTraceLimit;
  }
}

/** How many suspended frames of `fn` (a named async function) await the caller, directly or through others. */
export function countAwaitingFrames(fn: { name: string }): number {
  let count = 0;
  for (const site of awaitingFrames()) if (site.isAsync() && site.getFunctionName() === fn.name) count++;
  return count;
}

/**
 * The awaiting async frames as comparable texts (function, file, where it is defined, and the index inside a
 * Promise.all), innermost first. Two captures made from the same suspended chain share their outer part.
 */
export function awaitingChain(): string[] {
  const chain: string[] = [];
  for (const site of awaitingFrames()) {
    if (!site.isAsync()) continue;
    // Which branch of a Promise.all/allSettled/any (only Promise.all sets isPromiseAll(); every combinator gives the index):
    // without it, the branches of one Promise.allSettled would look like the same chain.
    const promiseIndex = site.getPromiseIndex();
    const index = promiseIndex !== null ? `#${promiseIndex}` : '';
    chain.push(`${site.getFunctionName()}@${site.getFileName()}:${site.getEnclosingLineNumber()}:${site.getEnclosingColumnNumber()}${index}`);
  }
  return chain;
}

/** True when `outer` (a chain captured earlier) is the outer end of `chain`: the code of `outer` awaits the caller. */
export function endsWith(chain: readonly string[], outer: readonly string[]): boolean {
  if (outer.length === 0 || outer.length > chain.length) return false;
  const offset = chain.length - outer.length;
  return outer.every((frame, i) => chain[offset + i] === frame);
}

/** Resolves after every pending microtask has run (so every `return promise` link of a call chain is in place). */
export function nextMacrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

let support: Promise<boolean> | undefined;
const logger = new Logger('TxLock');

// A named frame for the probe below.
async function nestjsTxlockProbeFrame(fn: () => Promise<number>): Promise<number> {
  return await fn();
}

/**
 * Whether this runtime shows async stack traces (V8's default, off with `--no-async-stack-traces` or code compiled
 * to generators): checked once, with a warning when it does not, since re-entry is then recognised by context alone.
 */
export function awaitChainsVisible(): Promise<boolean> {
  support ??= nestjsTxlockProbeFrame(async () => {
    await nextMacrotask();
    return countAwaitingFrames(nestjsTxlockProbeFrame);
  }).then(
    (count) => count === 1,
    () => false,
  ).then((visible) => {
    if (!visible) {
      logger.warn(
        'This runtime shows no async stack traces (node --no-async-stack-traces?), so nestjs-txlock cannot tell a locked call its ' +
          'caller awaits from detached work (a listener, a timer) started inside a lock on the same key: both are let in as re-entry.',
      );
    }
    return visible;
  });
  return support;
}
