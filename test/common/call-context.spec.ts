import { describe, expect, it } from '@jest/globals';
import { CallContextSlot } from '../../lib/common/call-context.js';

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

  it('gives two slots of one name (two copies of the library) the same value', () => {
    const mine = new CallContextSlot<string>('test:shared-name');
    const theirs = new CallContextSlot<string>('test:shared-name');
    expect(mine.run('x', () => theirs.getStore())).toBe('x');
  });
});
