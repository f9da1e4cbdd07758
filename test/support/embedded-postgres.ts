// Moved to the package's testing kit; the suite, `npm start` and `npm run demo` use the exported one.
export * from '../../lib/testing/embedded-postgres.js';
