// Moved to sample/support so `npm start` and `npm run demo` share it with the tests.
export * from '../../sample/support/embedded-postgres.js';
