// The compatibility cell (compat/<cell>/, installed there from its own lockfile) and the packages it pins: they resolve
// to its node_modules instead of the root's, both in jest (compat/jest.config.js) and in the worker processes that
// tests start (compat/resolve-hook.js).
export const COMPAT_CELL = 'nest11-typeorm03';

export const COMPAT_PACKAGES = [
  '@nestjs/common',
  '@nestjs/core',
  '@nestjs/platform-express',
  '@nestjs/schedule',
  '@nestjs/testing',
  '@nestjs/typeorm',
  'pg',
  'reflect-metadata',
  'rxjs',
  'typeorm',
];
