import { BadRequestException, Body, Controller, Get, HttpCode, HttpStatus, Post, Query } from '@nestjs/common';
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

  @Post('runs')
  @HttpCode(HttpStatus.OK)
  async trigger(@Body() body: TriggerBody): Promise<{ ran: boolean }> {
    const tick = await this.waitForTick(body);
    return { ran: (await this.stats.runNightly(tick)) !== undefined };
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
