import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { INestApplication, ModuleMetadata, Type } from '@nestjs/common';
import type { EntitySubscriberInterface } from 'typeorm';
import { TxLockModule, type TxLockModuleOptions } from '../../lib/index.js';

/** Options of createTestApp(). */
export interface TestAppOptions {
  url: string;
  entities?: Type[];
  providers?: ModuleMetadata['providers'];
  controllers?: Type[];
  imports?: ModuleMetadata['imports'];
  subscribers?: Type<EntitySubscriberInterface>[];
  txlock?: Omit<TxLockModuleOptions, 'dataSource'>;
  poolSize?: number;
  /** Start an HTTP server (for supertest). Default false: an application context only. */
  http?: boolean;
}

/**
 * A Nest app the way users build one: TypeOrmModule.forRoot over PostgreSQL, TxLockModule.forRoot over
 * that DataSource, `forFeature` repositories for the entities, and the providers/controllers under test.
 */
export async function createTestApp(options: TestAppOptions): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      TypeOrmModule.forRoot({
        type: 'postgres',
        url: options.url,
        entities: options.entities ?? [],
        subscribers: options.subscribers ?? [],
        synchronize: true,
        extra: { max: options.poolSize ?? 10 },
      }),
      TypeOrmModule.forFeature(options.entities ?? []),
      TxLockModule.forRoot(options.txlock ?? {}),
      TxLockModule.forFeature(options.entities ?? []),
      ...(options.imports ?? []),
    ],
    providers: options.providers ?? [],
    controllers: options.controllers ?? [],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: ['error', 'warn'] });
  if (options.http) await app.listen(0, '127.0.0.1');
  else await app.init();
  return app;
}
