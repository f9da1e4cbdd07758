// A Node module hook for the processes that tests spawn (test/support/processes.ts) while .ci/compat.sh runs: they
// load the compiled library from .build/, whose imports would otherwise find the root's node_modules. `--import`
// this file (through NODE_OPTIONS, which spawned processes inherit) to resolve the cell's packages from its install.
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { COMPAT_CELL, COMPAT_PACKAGES } from './compat-packages.js';

// A parent URL inside the cell's directory: Node then looks the package up in its node_modules first.
const cellParent = new URL(`./${COMPAT_CELL}/package.json`, import.meta.url).href;

/** Resolves a pinned package (or a subpath of one) as if the cell's package.json imported it. */
export async function resolve(specifier, context, nextResolve) {
  const pinned = COMPAT_PACKAGES.some((name) => specifier === name || specifier.startsWith(`${name}/`));
  return nextResolve(specifier, pinned ? { ...context, parentURL: cellParent } : context);
}

// Loaded by --import on the main thread: install this file as the hook (Node then loads it again off-thread).
if (isMainThread) register(import.meta.url);
