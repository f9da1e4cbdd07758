import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { today } from '../common/today.js';
import { SAMPLE_OPTIONS, type SampleOptions } from '../sample-options.js';
import { QuotaExceededException } from './quota-exceeded.exception.js';
import { QuotaUsage } from './quota-usage.entity.js';

/**
 * The cache-`incr` quota of seed 000: read the count, compare, write count + 1. Requests that read the
 * same count all pass the check, so far more than the limit get through.
 */
@Injectable()
export class UnsafeQuotasService {
  constructor(
    @InjectRepository(QuotaUsage) private readonly usage: Repository<QuotaUsage>,
    @Inject(SAMPLE_OPTIONS) private readonly options: SampleOptions,
  ) {}

  async consume(userId: string): Promise<{ used: number; limit: number }> {
    const limit = this.options.quotaPerDay;
    const key = `${userId}:${today()}`;
    const row = (await this.usage.findOneBy({ key })) ?? this.usage.create({ key, used: 0 });
    if (row.used >= limit) throw new QuotaExceededException(userId, limit);
    row.used += 1;
    // upsert, not insert: the first requests of the day all see "no row" and would otherwise collide.
    await this.usage.upsert(row, ['key']);
    return { used: row.used, limit };
  }
}
