import { BadRequestException, Body, Controller, Get, HttpCode, HttpStatus, Post } from '@nestjs/common';
import { DomainsService } from './domains.service.js';
import type { ImportResult } from './insert-missing.js';
import { UnsafeDomainsService } from './unsafe-domains.service.js';

const MAX_BATCH = 5_000;

/** Bulk import of domain names from concurrent workers (seed 004). Body: `{ "names": ["a.com", ...] }`. */
@Controller('domains')
export class DomainsController {
  constructor(
    private readonly domains: DomainsService,
    private readonly unsafeDomains: UnsafeDomainsService,
  ) {}

  /** One bulk get-or-create: no lock, no duplicate-key error, whatever the other workers do. */
  @Post('import')
  @HttpCode(HttpStatus.OK)
  import(@Body() body: { names?: unknown }): Promise<ImportResult> {
    return this.domains.import(namesOf(body));
  }

  /** The seed's own fix: the naive look-up + insert, under `LOCK TABLE domains IN SHARE ROW EXCLUSIVE MODE`. */
  @Post('import/table-lock')
  @HttpCode(HttpStatus.OK)
  importUnderTableLock(@Body() body: { names?: unknown }): Promise<ImportResult> {
    return this.domains.importUnderTableLock(namesOf(body));
  }

  @Post('import/unsafe')
  @HttpCode(HttpStatus.OK)
  importUnsafe(@Body() body: { names?: unknown }): Promise<ImportResult> {
    return this.unsafeDomains.import(namesOf(body));
  }

  @Get('count')
  async count(): Promise<{ count: number }> {
    return { count: await this.domains.count() };
  }
}

function namesOf(body: { names?: unknown }): string[] {
  const names = body?.names;
  if (!Array.isArray(names) || names.length > MAX_BATCH || !names.every((name) => typeof name === 'string' && name !== '')) {
    throw new BadRequestException(`names must be an array of at most ${MAX_BATCH} non-empty strings`);
  }
  return names as string[];
}
