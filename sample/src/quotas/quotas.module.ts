import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { QuotaUsage } from './quota-usage.entity.js';
import { QuotasController } from './quotas.controller.js';
import { QuotasService } from './quotas.service.js';
import { UnsafeQuotasService } from './unsafe-quotas.service.js';

/** Quotas: never more than the limit per user and day, under any concurrency. */
@Module({
  imports: [TypeOrmModule.forFeature([QuotaUsage])],
  controllers: [QuotasController],
  providers: [QuotasService, UnsafeQuotasService],
})
export class QuotasModule {}
