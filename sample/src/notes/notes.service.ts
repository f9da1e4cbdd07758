import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { AtomicService, Transactional } from 'nestjs-txlock';
import type { Repository } from 'typeorm';
import { Note } from './note.entity.js';

/**
 * Notes, written as if there were one tenant: no query names one. Row-level security and the transaction's
 * `app.tenant_id` (module option `settings`) keep each tenant to its own rows.
 */
@Injectable()
export class NotesService {
  constructor(
    @InjectRepository(Note) private readonly notes: Repository<Note>,
    private readonly atomic: AtomicService,
  ) {}

  /** Every note, the query says; the current tenant's, PostgreSQL answers. */
  @Transactional({ readOnly: true })
  list(): Promise<Note[]> {
    return this.notes.find({ order: { id: 'ASC' } });
  }

  /** Rewrites every note, the query says (no WHERE); the current tenant's, PostgreSQL does. Returns how many. */
  @Transactional()
  async rewriteAll(body: string): Promise<number> {
    const result = await this.notes.createQueryBuilder().update().set({ body }).execute();
    return result.affected ?? 0;
  }

  /**
   * The note `slug` of the current tenant, created when missing: one statement outside any transaction, which gets
   * the request's settings too. The tenant's id comes from the same setting (the column's default).
   */
  async getOrCreate(tenantId: string, slug: string, body: string): Promise<{ note: Note; created: boolean }> {
    const { entity, created } = await this.atomic.getOrCreate(Note, { tenantId, slug }, { body });
    return { note: entity, created };
  }
}
