/**
 * Which test the running code belongs to, as the test runner's own async context says, when it says so: jest 30
 * runs each test (its hooks and everything its code starts, timers and promises included) in a context of its
 * own and answers `expect.getState().currentTestIdentity()`. Undefined elsewhere; the kit then relies on the
 * context beginTestTransaction() gives its caller.
 */
export function currentTestIdentity(): object | undefined {
  const expect = (globalThis as { expect?: { getState?: () => { currentTestIdentity?: () => unknown } } }).expect;
  const test = expect?.getState?.().currentTestIdentity?.();
  return typeof test === 'object' && test !== null ? test : undefined;
}
