import { BadRequestException, Body, Controller, Get, HttpCode, HttpStatus, Param, Post, Query } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { today } from '../common/today.js';
import type { StatsRun } from './stats-run.entity.js';
import { StatsService } from './stats.service.js';

/** When a trigger may wait for its `at` instant: enough for the demo, short enough to tie up nothing. */
const MAX_WAIT_MS = 10_000;

/** Body of a trigger: the schedule slot to run and the instant to run it at (epoch ms), like a cron tick. */
interface TriggerBody {
  tick?: unknown;
  at?: unknown;
}

/**
 * Fires the nightly job's body by hand. In production @Cron fires it; the demo and tests call this on
 * every replica with the same `at`, which is what a cron tick does on replicas with synchronised clocks.
 */
@Controller('stats')
export class StatsController {
  constructor(private readonly stats: StatsService) {}

  /** The job under its lease (@ScheduledLock): once per tick across replicas. */
  @Post('runs')
  @HttpCode(HttpStatus.OK)
  async trigger(@Body() body: TriggerBody): Promise<{ ran: boolean }> {
    const tick = await this.waitForTick(body);
    return { ran: (await this.stats.runNightly(tick)) !== undefined };
  }

  /** The job under @AdvisoryLock({ onLocked: 'skip' }): no two at once, but a late replica runs it again. */
  @Post('runs/advisory')
  @HttpCode(HttpStatus.OK)
  async triggerAdvisory(@Body() body: TriggerBody): Promise<{ ran: boolean }> {
    const tick = await this.waitForTick(body);
    return { ran: (await this.stats.runNightlyAdvisory(tick)) !== undefined };
  }

  @Post('runs/unsafe')
  @HttpCode(HttpStatus.OK)
  async triggerUnsafe(@Body() body: TriggerBody): Promise<{ ran: boolean }> {
    const tick = await this.waitForTick(body);
    await this.stats.runNightlyUnlocked(tick);
    return { ran: true };
  }

  @Get('runs')
  runs(@Query('tick') tick?: string): Promise<StatsRun[]> {
    return this.stats.runs(tick);
  }

  /** The expensive summary, computed once across replicas for concurrent requests (@SingleFlight). */
  @Get('summary/:scope')
  summary(@Param('scope') scope: string) {
    return this.stats.summary(scope);
  }

  /** The naive twin: computed again for every request. */
  @Get('summary/:scope/unsafe')
  summaryUnsafe(@Param('scope') scope: string) {
    return this.stats.summaryUnsafe(scope);
  }

  /** How many times the summary of `scope` was computed. */
  @Get('summary/:scope/computations')
  async computations(@Param('scope') scope: string): Promise<{ computations: number }> {
    return { computations: await this.stats.computationsOf(scope) };
  }

  private async waitForTick(body: TriggerBody): Promise<string> {
    const tick = body?.tick ?? today();
    const at = body?.at ?? Date.now();
    if (typeof tick !== 'string' || typeof at !== 'number') throw new BadRequestException('tick must be a string and at a number (epoch ms)');
    const wait = at - Date.now();
    if (wait > MAX_WAIT_MS) throw new BadRequestException(`at must be within ${MAX_WAIT_MS} ms from now`);
    if (wait > 0) await sleep(wait);
    return tick;
  }
}
