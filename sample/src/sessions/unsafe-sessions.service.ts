import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { UnconstrainedSession } from './session.entity.js';

/**
 * Django's `get_or_create` done by hand (seed 004): findOne, then save when nothing was found. Every
 * request that looks before the first insert commits creates its own session.
 */
@Injectable()
export class UnsafeSessionsService {
  constructor(@InjectRepository(UnconstrainedSession) private readonly sessions: Repository<UnconstrainedSession>) {}

  async getOrCreate(clientKey: string): Promise<{ id: string; created: boolean }> {
    const existing = await this.sessions.findOneBy({ clientKey });
    if (existing) return { id: existing.id, created: false };
    const session = await this.sessions.save(this.sessions.create({ clientKey }));
    return { id: session.id, created: true };
  }

  /** How many rows the client key ended up with (1 is right). */
  count(clientKey: string): Promise<number> {
    return this.sessions.countBy({ clientKey });
  }
}
