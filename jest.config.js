/** @type {import('jest').Config} */
export default {
  extensionsToTreatAsEsm: ['.ts'],
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.spec.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // The sample imports the package by name, as users do; in tests that name means the sources.
    '^nestjs-txlock$': '<rootDir>/lib/index.ts',
    '^nestjs-txlock/testing$': '<rootDir>/lib/testing/index.ts',
  },
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true }] },
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  // Each file owns at most ~40 connections; two files at once stay under PostgreSQL's default 100.
  maxWorkers: 2,
  testTimeout: 60_000,
};
