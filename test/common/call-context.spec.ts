import { describe, expect, it } from '@jest/globals';
import type { DataSource } from 'typeorm';
import { CallContextSlot } from '../../lib/common/call-context.js';
import { currentScope, runInScope } from '../../lib/transaction/transaction-scope.js';

// How many AsyncLocalStorage stores a promise was given on creation (Node 20 and 22 put one property per store in
// use on every promise; Node 24's AsyncContextFrame puts none).
const storesOn = (promise: Promise<unknown>) => Object.getOwnPropertySymbols(promise).filter((symbol) => symbol.description === 'kResourceStore').length;

// The slots share one AsyncLocalStorage (fewer stores on promise hooks, Node 20 and 22); each must still behave as a
// store of its own.
describe('CallContextSlot', () => {
  it('carries each slot along its call chain, independently of the others', async () => {
    const first = new CallContextSlot<string>('test:first');
    const second = new CallContextSlot<number>('test:second');
    expect(first.getStore()).toBeUndefined();
    const seen = await first.run('a', async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      const inner = await second.run(1, async () => {
        await Promise.resolve();
        return [first.getStore(), second.getStore()];
      });
      // A nested run of the same slot shadows it for its own chain only.
      const shadowed = await first.run('b', async () => first.getStore());
      return { inner, shadowed, after: [first.getStore(), second.getStore()] };
    });
    expect(seen).toEqual({ inner: ['a', 1], shadowed: 'b', after: ['a', undefined] });
    expect([first.getStore(), second.getStore()]).toEqual([undefined, undefined]);
  });

  it('keeps concurrent chains apart', async () => {
    const slot = new CallContextSlot<number>('test:concurrent');
    const values = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        slot.run(i, async () => {
          await new Promise((resolve) => setTimeout(resolve, 20 - i));
          return slot.getStore();
        }),
      ),
    );
    expect(values).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('enterWith() gives the rest of the call chain a value, the other slots unchanged', async () => {
    const entered = new CallContextSlot<string>('test:entered');
    const kept = new CallContextSlot<string>('test:kept');
    const seen = await kept.run('k', async () => {
      await Promise.resolve();
      entered.enterWith('e');
      const later = await new Promise((resolve) => setTimeout(() => resolve([entered.getStore(), kept.getStore()]), 1));
      return { now: [entered.getStore(), kept.getStore()], later };
    });
    expect(seen).toEqual({ now: ['e', 'k'], later: ['e', 'k'] });
  });

  it('carries the transaction scopes in the same store: using them adds no AsyncLocalStorage to every promise', () => {
    const slot = new CallContextSlot<number>('test:stores');
    const inUse = slot.run(1, () => storesOn(Promise.resolve()));
    const dataSource = {} as DataSource;
    const withScopes = runInScope(dataSource, null, () => slot.run(2, () => [storesOn(Promise.resolve()), currentScope(dataSource), slot.getStore()]));
    expect(withScopes).toEqual([inUse, undefined, 2]);
  });

  it('gives two slots of one name (two copies of the library) the same value', () => {
    const mine = new CallContextSlot<string>('test:shared-name');
    const theirs = new CallContextSlot<string>('test:shared-name');
    expect(mine.run('x', () => theirs.getStore())).toBe('x');
  });
});
