// The root test suite, run against the oldest versions nestjs-txlock supports (compat/nest11-typeorm03/, installed
// there with `npm ci`): Nest, @nestjs/typeorm, TypeORM, pg, rxjs and reflect-metadata resolve to that install for the
// tests, the library sources and every package that imports them, so only one copy of each is ever loaded.
// Worker processes that tests spawn get the same redirection from compat/resolve-hook.js (see .ci/compat.sh).
import { fileURLToPath } from 'node:url';
import base from '../jest.config.js';
import { COMPAT_CELL, COMPAT_PACKAGES } from './compat-packages.js';

const modules = fileURLToPath(new URL(`./${COMPAT_CELL}/node_modules/`, import.meta.url));

/** @type {import('jest').Config} */
export default {
  ...base,
  rootDir: '..',
  // A named subset: transactions, locks, counters, get-or-create and the e2e tests on the sample app.
  roots: ['transaction', 'locks', 'counters', 'atomic', 'e2e'].map((dir) => `<rootDir>/test/${dir}`),
  // Tests left out of the cell, by title (a renamed test runs again rather than drop out silently).
  testNamePattern: `^(?!.*(${[
    // Nest 12 streams a raw Readable that a handler returns; Nest 11 answers it as JSON and never reads it.
    'commits after a returned stream has been read to the end',
    // The controls: the naive twins, without the library, show the race exists; on these versions they would
    // only re-test TypeORM.
    'control: ',
    // The volume runs (10,000 and 4,000 increments from 4 processes, 4 processes x 250 lock entries): exact values
    // and exclusion across connections and processes are what the cell's other tests of those files prove too, at a
    // fraction of the time.
    'increments from \\d+ processes',
    'one caller at a time into @AdvisoryLock: \\d+ processes',
  ].join('|')}))`,
  moduleNameMapper: {
    [`^(${COMPAT_PACKAGES.map((name) => name.replace('/', '\\/')).join('|')})(/.*)?$`]: `${modules}$1$2`,
    ...base.moduleNameMapper,
  },
};
