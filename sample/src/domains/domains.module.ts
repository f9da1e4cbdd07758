import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Domain } from './domain.entity.js';
import { DomainsController } from './domains.controller.js';
import { DomainsService } from './domains.service.js';
import { UnsafeDomainsService } from './unsafe-domains.service.js';

/** Domains import: bulk get-or-create, and the table-lock variant. */
@Module({
  imports: [TypeOrmModule.forFeature([Domain])],
  controllers: [DomainsController],
  providers: [DomainsService, UnsafeDomainsService],
})
export class DomainsModule {}
