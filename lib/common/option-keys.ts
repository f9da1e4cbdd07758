import { InvalidOptionError } from '../errors.js';

/** Every key of an options interface, each `true`: a list the compiler checks against the interface. */
export type KeyList<Options extends object> = { [Key in keyof Required<Options>]: true };

/** The keys one kind of options object may have, and who takes them (`@AdvisoryLock()`), for checkOptionKeys(). */
export interface AllowedKeys {
  readonly owner: string;
  readonly keys: ReadonlySet<string>;
}

/**
 * The keys of an options interface, listed once as `{ key: true, ... }` (the compiler then refuses a list that
 * misses a key or names one the interface lacks), taken by `owner`.
 */
export function allowedKeys<Options extends object>(owner: string, keys: KeyList<Options>): AllowedKeys {
  return { owner, keys: new Set(Object.keys(keys)) };
}

/**
 * Refuses a key of `options` that is not allowed (a typo such as `kye` or `timeOutMs`, which nothing type-checks in
 * JavaScript or in an SWC build, and which would otherwise be ignored without a word) with InvalidOptionError naming
 * the valid keys and the closest one ("did you mean"); `part` names a nested part of the options (`counters`).
 * Anything but an object passes: whether options may be missing, and must be an object, is the caller's to say.
 * Cheap enough for every call: a for-in and a Set lookup per key, nothing allocated unless a key is refused.
 */
export function checkOptionKeys(options: unknown, allowed: AllowedKeys, part = ''): void {
  if (typeof options !== 'object' || options === null) return; // not an options object: its own check says so
  for (const key in options) {
    if (!allowed.keys.has(key) && Object.prototype.hasOwnProperty.call(options, key)) throw unknownKey(key, [...allowed.keys], allowed.owner, part);
  }
}

function unknownKey(key: string, valid: readonly string[], owner: string, part: string): InvalidOptionError {
  const prefix = part ? `${part}.` : '';
  const closest = closestKey(key, valid);
  return new InvalidOptionError(
    `${owner} option`,
    `${prefix}${key}`,
    valid,
    `Unknown ${owner} option "${prefix}${key}"${closest ? ` (did you mean "${prefix}${closest}"?)` : ''}: ` +
      `${part ? `"${part}" takes` : 'the options are'} ${valid.map((k) => `"${k}"`).join(', ')}.`,
  );
}

// The valid key nearest to a misspelt one (Levenshtein distance at most 2, case aside), if any.
function closestKey(key: string, valid: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of valid) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}
