import { describe, expect, it } from '@jest/globals';
import { StatementWatch, StatementWatches } from '../../lib/transaction/statement-watches.js';

// The sweep behind the vanished-client bound's check of statements without an answer (vanished-client.ts); the bound
// itself, against a connection that goes silent, is test/reliability/vanished-client.spec.ts.
describe('StatementWatches', () => {
  class Named extends StatementWatch {
    constructor(readonly name: string) {
      super(Date.now());
    }
  }

  it('hands over each statement still in flight once it is overdue, once per check, and never one that settled', async () => {
    const overdue: string[] = [];
    let wake: () => void = () => undefined;
    const watches = new StatementWatches<Named>(20, (watch) => {
      overdue.push(watch.name);
      wake();
    });
    const [a, b, c] = ['a', 'b', 'c'].map((name) => new Named(name));
    for (const watch of [a, b, c]) watches.add(watch!);
    watches.remove(b!);
    await new Promise<void>((resolve) => (wake = () => overdue.length === 2 && resolve()));
    expect(overdue.sort()).toEqual(['a', 'c']);
    expect(b!.settled).toBe(true);
    // While its check runs, a statement is not handed over again; once the check found it served, it is, later.
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(overdue).toHaveLength(2);
    a!.checking = false;
    a!.since = Date.now();
    await new Promise<void>((resolve) => (wake = () => overdue.length === 3 && resolve()));
    expect(overdue[2]).toBe('a');
    watches.remove(a!);
    watches.remove(c!);
  });
});
