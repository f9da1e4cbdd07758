import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Domain } from './domain.entity.js';
import { insertMissing, type ImportResult } from './insert-missing.js';

/** The seed's workers as first written: concurrent imports of overlapping batches die on duplicate keys. */
@Injectable()
export class UnsafeDomainsService {
  constructor(@InjectRepository(Domain) private readonly domains: Repository<Domain>) {}

  import(names: string[]): Promise<ImportResult> {
    return insertMissing(this.domains, names);
  }
}
