import { describe, it } from '@jest/globals';
import type { Op, Program } from '../../check/model/program.js';
import { renumber } from '../../check/model/program.js';
import { useModelChecker } from './model-checker.js';

// The library names what its own statements meet inside a transaction (ReadOnlyTransactionError in a read-only one,
// TransactionSerializationError at REPEATABLE READ/SERIALIZABLE); the model says so too. Each program runs on the real
// PostgreSQL and must be explained by the model every time.
describe('named errors of the library statements, against the reference model', () => {
  const checker = useModelChecker();
  const counter = (key: number): Op => ({ k: 'counter', id: 0, ds: 'main', key, by: 1 });
  const goc = (key: number): Op => ({ k: 'goc', id: 0, ds: 'main', key, update: false });
  const insert = (): Op => ({ k: 'insert', id: 0, ds: 'main' });
  const tx = (body: Op[], options: Partial<Extract<Op, { k: 'tx' }>> = {}): Op => ({ k: 'tx', id: 0, ds: 'main', via: 'host', ...options, body });

  it('a counter or get-or-create in a readOnly transaction: ReadOnlyTransactionError', async () => {
    const program: Program = renumber({ requests: [[tx([counter(0)], { readOnly: true }), tx([goc(0)], { readOnly: true })]] });
    await checker.expectExplained(program, { attempts: 3 });
  });

  // Each transaction's snapshot is taken by its insert, before its increment may wait for the other's row lock.
  it('concurrent counter increments at SERIALIZABLE and REPEATABLE READ: done, or TransactionSerializationError', async () => {
    const request = (isolation: 'SERIALIZABLE' | 'REPEATABLE READ'): Op[] => [tx([insert(), counter(0)], { isolation })];
    const program: Program = renumber({ requests: [request('SERIALIZABLE'), request('REPEATABLE READ')] });
    await checker.expectExplained(program, { attempts: 10 });
  });
});
