/** One day of a fixed window, in ms. */
export const DAY_MS = 86_400_000;

/** The counter key of a user's daily quota. The window itself is the counter's job; the key names the user. */
export function quotaKey(userId: string): string {
  return `quota:${userId}`;
}
