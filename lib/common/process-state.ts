/**
 * The version of this copy of the library. The build writes package.json's version here (scripts/finish-build.mjs);
 * the sources keep this placeholder, so the test suite's copy never shares state with an installed one.
 */
const VERSION = '0.0.0-source';

/**
 * One value per process for `name`, however many copies of this version of the library are loaded: the package
 * ships an ES module build (for `import`) and a CommonJS one (for `require()`), and a process that loads both (a
 * CommonJS app with an ES module dependency that imports nestjs-txlock, say) must still have one AsyncLocalStorage,
 * one transaction registry and one DataSource routing table, or a transaction opened through one copy would be
 * invisible to the other. The value lives on `globalThis` under a registered symbol; the first copy to ask makes it
 * with `create`, later copies get the same one. Copies of different versions keep values of their own (their
 * shapes may differ), as two separately installed libraries always did.
 */
export function processWide<T>(name: string, create: () => T): T {
  const key = Symbol.for(`nestjs-txlock@${VERSION}:${name}`);
  const store = globalThis as Record<symbol, unknown>;
  if (!(key in store)) Object.defineProperty(store, key, { value: create(), enumerable: false });
  return store[key] as T;
}
