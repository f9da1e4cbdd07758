import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { calculatePoints } from './calculate-points.js';
import { User } from './user.entity.js';

/** Seed 003 as written: read the user, add points in code, save. Concurrent awards overwrite each other. */
@Injectable()
export class UnsafePointsService {
  constructor(@InjectRepository(User) private readonly users: Repository<User>) {}

  async award(userId: number): Promise<User> {
    const user = await this.users.findOneByOrFail({ id: userId });
    user.points += await calculatePoints(user);
    return this.users.save(user);
  }
}
