import { Injectable, NotFoundException } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { AdvisoryLock, CounterService, Transactional, type LockKey } from 'nestjs-txlock';
import type { Repository } from 'typeorm';
import { calculatePoints } from './calculate-points.js';
import { User } from './user.entity.js';

/** The advisory lock key of one user's points (the e2e test takes it too, to hold it). */
export const pointsLockKey = (userId: number): LockKey => ['points', userId];

/** How long an award waits for the user's lock before answering 423 Locked. */
export const POINTS_LOCK_TIMEOUT_MS = 2_000;

/** Users and the two safe ways to award points computed in code (seed 003). */
@Injectable()
export class PointsService {
  constructor(
    @InjectRepository(User) private readonly users: Repository<User>,
    private readonly counters: CounterService,
  ) {}

  createUser(name: string): Promise<User> {
    return this.users.save(this.users.create({ name }));
  }

  /** The user, or 404. */
  async getUser(id: number): Promise<User> {
    const user = await this.users.findOneBy({ id });
    if (!user) throw new NotFoundException(`User ${id} does not exist.`);
    return user;
  }

  /**
   * Seed 003's `user.points += calculate_points(user); save()`, made safe: awards to one user take turns
   * on an advisory lock for that user (across replicas), so each reads the total the previous one saved.
   * Awards to different users still run in parallel. The lock opens the transaction (it travels with the
   * BEGIN) and @Transactional joins it: the read-modify-write stays one transaction even without the lock.
   */
  @AdvisoryLock({ key: pointsLockKey, timeoutMs: POINTS_LOCK_TIMEOUT_MS, label: 'user-points' })
  @Transactional()
  async awardLocked(userId: number): Promise<User> {
    const user = await this.getUser(userId);
    user.points += await calculatePoints(user);
    return this.users.save(user);
  }

  /**
   * Django's `F('points') + calculate_points(user)`: the amount is computed from a read that may already
   * be stale, but the addition happens in the database, so no award is lost, and the new total comes back.
   */
  async awardIncrement(userId: number): Promise<{ points: number }> {
    const amount = await calculatePoints(await this.getUser(userId));
    const [points] = await this.counters.incrementColumn(User, { id: userId }, 'points', amount);
    if (points === undefined) throw new NotFoundException(`User ${userId} does not exist.`);
    return { points };
  }
}
