import { Injectable } from '@nestjs/common';
import { AtomicService } from 'nestjs-txlock';
import { Session } from './session.entity.js';

/** Get-or-create of sessions: exactly one row per client key, and every caller gets that row. */
@Injectable()
export class SessionsService {
  constructor(private readonly atomic: AtomicService) {}

  /**
   * One row per client key, however many requests race: the unique constraint decides, and the callers
   * that lose the race read the winner's row instead of failing (`created` is true for the winner only).
   */
  async getOrCreate(clientKey: string): Promise<{ id: string; created: boolean }> {
    const { entity, created } = await this.atomic.getOrCreate(Session, { clientKey });
    return { id: entity.id, created };
  }
}
