import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { processWide } from '../../lib/common/process-state.js';

// The package ships an ES module build and a CommonJS one; a process may load both (fixtures/dual-load.mjs shows it
// on the packed tarball). What must be single then is declared through processWide().
describe('processWide()', () => {
  it('gives a second copy of the library the value the first one made', () => {
    let made = 0;
    const first = processWide('test:one-value', () => ({ copy: ++made }));
    const second = processWide('test:one-value', () => ({ copy: ++made }));
    expect(second).toBe(first);
    expect(made).toBe(1);
  });

  it('keeps the value on globalThis under a registered symbol named after the version, where every copy finds it', () => {
    const value = processWide('test:registered', () => new Map());
    const key = Object.getOwnPropertySymbols(globalThis).find((symbol) => symbol.description?.endsWith(':test:registered'));
    expect(key).toBe(Symbol.for('nestjs-txlock@0.0.0-source:test:registered'));
    expect((globalThis as Record<symbol, unknown>)[key!]).toBe(value);
  });
});

// Module-level values of lib/ that are neither process-wide nor harmless per copy would split state between the two
// builds. Each exception says why one per copy is right.
const PER_COPY: Record<string, string> = {
  'atomic/json-input.ts JSON_TYPES': 'a constant set',
  'common/ensure-table.ts ALREADY_EXISTS': 'a constant set',
  'common/wrap-method.ts FUNCTION_OWN': 'a constant set',
  'counters/column-increment.ts INTEGER_TYPES': 'a constant set',
  'counters/column-increment.ts BIGINT_TYPES': 'a constant set',
  'transaction/sql-state.ts RETRYABLE': 'a constant set',
  'transaction/prepared-statements.ts POOLER_SYMPTOMS': 'a constant set',
  'transaction/connection-errors.ts SHUTDOWN': 'a constant set',
  'transaction/connection-errors.ts SOCKET_CODES': 'a constant set',
  'transaction/tx-repository.ts REPOSITORY_FIELDS': 'a constant set',
  'transaction/transaction-scope.ts NO_SCOPES': 'an empty map that is never written',
  'locks/lock-key.ts HASHES': 'a cache of a pure function',
  'server/connection-path.ts answers': 'a cache of what a server answered about one connection',
  'txlock.module-definition.ts TXLOCK_DATA_SOURCE_NAME': "a Nest injection token, which belongs to its copy's TxLockModule like the classes do",
  'telemetry/telemetry.ts telemetry': "each copy's TransactionHost starts its own copy's telemetry",
  'telemetry/telemetry.ts loading': "each copy's TransactionHost starts its own copy's telemetry",
  'telemetry/telemetry.ts madeFor': "each copy's TransactionHost starts its own copy's telemetry",
  'common/await-chain.ts support': 'a probe of the runtime, the same answer in every copy',
  'common/quoted-values.ts quoted': "keyed by errors of its own copy's classes, which only its own copy's telemetry records",
  'locks/branch-locks.ts NONE': 'an empty set that is never written',
  'server/connection-path.ts nativeTargets': 'a cache of what a server answered about one connection',
  'transaction/autocommit-statement.ts SERIALIZATION': 'a constant set',
  'telemetry/outbox-telemetry.ts instruments': "keyed by its own copy's Telemetry, which only that copy's outbox uses",
  'transaction/transaction.host.ts scopeTags': "tags for this copy's shared work (coalesced increments, single flights), which only this copy's services read",
};

describe("lib/'s module-level state", () => {
  it('is process-wide, or one of the values that may be one per copy', () => {
    const lib = join(import.meta.dirname, '../../lib');
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)]));
    const declaration = /^(?:export )?(?:const|let) (\w+)\b[^=(]*(?:=\s*(?:new (?:AsyncLocalStorage|Map|WeakMap|Set|WeakSet)\b|Symbol\()|;)/;
    const found = walk(lib)
      .filter((file) => file.endsWith('.ts'))
      .flatMap((file) => readFileSync(file, 'utf8').split('\n').flatMap((line) => {
        const match = declaration.exec(line);
        return match ? [`${relative(lib, file)} ${match[1]}`] : [];
      }));
    expect(found.filter((name) => !(name in PER_COPY))).toEqual([]);
    expect(Object.keys(PER_COPY).filter((name) => !found.includes(name))).toEqual([]);
  });
});
