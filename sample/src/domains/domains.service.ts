import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { AtomicService, TableLock } from 'nestjs-txlock';
import type { Repository } from 'typeorm';
import { Domain } from './domain.entity.js';
import { insertMissing, type ImportResult } from './insert-missing.js';

/** Imports of domain names that concurrent workers can run at once. */
@Injectable()
export class DomainsService {
  constructor(
    @InjectRepository(Domain) private readonly domains: Repository<Domain>,
    private readonly atomic: AtomicService,
  ) {}

  /**
   * Bulk get-or-create in a bounded number of statements: other workers importing the same names at the
   * same moment neither fail nor duplicate anything, and no lock keeps them waiting.
   */
  async import(names: string[]): Promise<ImportResult> {
    const { created } = await this.atomic.bulkGetOrCreate(
      Domain,
      names.map((name) => ({ name })),
      { conflictColumns: ['name'] },
    );
    const createdCount = created.filter(Boolean).length;
    return { created: createdCount, existing: new Set(names).size - createdCount };
  }

  /**
   * The seed's own fix: the naive look-up + insert, in a transaction that first takes
   * `LOCK TABLE domains IN SHARE ROW EXCLUSIVE MODE`. That mode conflicts with itself and with every
   * writer, so importers take turns while readers carry on; correct, but serialised, where
   * `import()` lets workers run side by side.
   */
  @TableLock('SHARE ROW EXCLUSIVE', Domain)
  async importUnderTableLock(names: string[]): Promise<ImportResult> {
    return insertMissing(this.domains, names);
  }

  count(): Promise<number> {
    return this.domains.count();
  }
}
