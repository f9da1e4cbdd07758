import { Inject, Injectable } from '@nestjs/common';
import { CounterService } from 'nestjs-txlock';
import { SAMPLE_OPTIONS, type SampleOptions } from '../sample-options.js';
import { QuotaExceededException } from './quota-exceeded.exception.js';
import { DAY_MS, quotaKey } from './quota-key.js';

/** Today's use of a user's quota. */
export interface QuotaUsageView {
  used: number;
  limit: number;
}

/**
 * A per-user daily quota that never lets more than the limit through: check and consume are one
 * statement (`tryIncrement`), and the window restarts the count each day in that same statement.
 */
@Injectable()
export class QuotasService {
  constructor(
    private readonly counters: CounterService,
    @Inject(SAMPLE_OPTIONS) private readonly options: SampleOptions,
  ) {}

  /** Uses one request of today's quota, or throws 429. */
  async consume(userId: string): Promise<QuotaUsageView> {
    const limit = this.options.quotaPerDay;
    const result = await this.counters.tryIncrement(quotaKey(userId), 1, { max: limit, windowMs: DAY_MS });
    if (!result.applied) throw new QuotaExceededException(userId, limit, result.resetsAt);
    return { used: result.value, limit };
  }

  async usage(userId: string): Promise<QuotaUsageView> {
    return { used: await this.counters.get(quotaKey(userId)), limit: this.options.quotaPerDay };
  }
}
