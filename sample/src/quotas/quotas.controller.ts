import { Controller, Get, HttpCode, HttpStatus, Param, Post } from '@nestjs/common';
import { QuotasService } from './quotas.service.js';
import { UnsafeQuotasService } from './unsafe-quotas.service.js';

/** A per-user daily quota: each POST uses one request of it; over the quota → 429. */
@Controller('quotas')
export class QuotasController {
  constructor(
    private readonly quotas: QuotasService,
    private readonly unsafeQuotas: UnsafeQuotasService,
  ) {}

  @Post(':userId/requests')
  @HttpCode(HttpStatus.OK)
  consume(@Param('userId') userId: string) {
    return this.quotas.consume(userId);
  }

  @Get(':userId')
  usage(@Param('userId') userId: string) {
    return this.quotas.usage(userId);
  }

  @Post(':userId/requests/unsafe')
  @HttpCode(HttpStatus.OK)
  consumeUnsafe(@Param('userId') userId: string) {
    return this.unsafeQuotas.consume(userId);
  }
}
