import { setTimeout as sleep } from 'node:timers/promises';
import type { User } from './user.entity.js';

/** Points per award: a constant so the demo and the tests know the exact expected total. */
export const POINTS_PER_AWARD = 10;

/**
 * Stands for seed 003's `calculate_points(user)`: logic too involved for one UPDATE, which takes a
 * moment (here a short wait for "another service") between reading the user and saving it.
 */
export async function calculatePoints(user: User): Promise<number> {
  await sleep(2);
  // A real rule would look at the user; this one only needs to be deterministic.
  return user.points >= 0 ? POINTS_PER_AWARD : 0;
}
