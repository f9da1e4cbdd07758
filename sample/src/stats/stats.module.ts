import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { StatsComputation } from './stats-computation.entity.js';
import { StatsRun } from './stats-run.entity.js';
import { StatsController } from './stats.controller.js';
import { StatsService } from './stats.service.js';

/** The nightly stats job (@Cron on every replica, run by one of them per tick) and the single-flight summary. */
@Module({
  imports: [TypeOrmModule.forFeature([StatsRun, StatsComputation])],
  controllers: [StatsController],
  providers: [StatsService],
})
export class StatsModule {}
