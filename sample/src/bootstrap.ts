import type { INestApplication, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import type { SampleOptions } from './sample-options.js';

/** Builds the sample app (not listening yet). main.ts and the e2e tests both start it this way. */
export async function createSampleApp(options: SampleOptions, logger: LogLevel[]): Promise<INestApplication> {
  return NestFactory.create(AppModule.forRoot(options), { logger });
}
