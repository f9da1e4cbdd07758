import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { TypeOrmModule } from '@nestjs/typeorm';
import { LeaseEntity, OutboxEventEntity, SingleFlightEntity, TxLockCounter, TxLockModule } from 'nestjs-txlock';
import { DataSource } from 'typeorm';
import { TxLockHttpFilter } from './common/txlock-http.filter.js';
import { DomainsModule } from './domains/domains.module.js';
import { PointsModule } from './points/points.module.js';
import { PostsModule } from './posts/posts.module.js';
import { QuotasModule } from './quotas/quotas.module.js';
import { SAMPLE_OPTIONS, type SampleOptions } from './sample-options.js';
import { SessionsModule } from './sessions/sessions.module.js';
import { StatsModule } from './stats/stats.module.js';

/**
 * The sample app: TypeORM over PostgreSQL, nestjs-txlock over TypeORM's DataSource, and one module per
 * race from the seeds, each with its safe endpoint and (where it teaches something) a naive `/unsafe` twin.
 */
@Module({})
export class AppModule {
  static forRoot(options: SampleOptions): DynamicModule {
    return {
      module: AppModule,
      // Global so feature modules can read the settings without importing AppModule back.
      global: true,
      imports: [
        TypeOrmModule.forRoot({
          type: 'postgres',
          url: options.databaseUrl,
          // The feature modules' entities, plus the library's tables (counters, leases, single-flight values, outbox):
          // as entities, synchronize (or the migrations you generate) creates them like any other table.
          autoLoadEntities: true,
          entities: [TxLockCounter, LeaseEntity, SingleFlightEntity, OutboxEventEntity],
          // Fine for a demo; a real app runs migrations (two replicas syncing at once can collide).
          synchronize: true,
          extra: { max: options.poolSize },
        }),
        TxLockModule.forRootAsync({
          inject: [DataSource],
          useFactory: (dataSource: DataSource) => ({ dataSource }),
        }),
        ScheduleModule.forRoot(),
        PostsModule,
        SessionsModule,
        PointsModule,
        QuotasModule,
        DomainsModule,
        StatsModule,
      ],
      providers: [
        { provide: SAMPLE_OPTIONS, useValue: options },
        { provide: APP_FILTER, useClass: TxLockHttpFilter },
      ],
      exports: [SAMPLE_OPTIONS],
    };
  }
}
