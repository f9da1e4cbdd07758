import { createHash } from 'node:crypto';
import { isWellFormed, WELL_FORMED_TEXT } from '../common/text.js';
import { describeValue, InvalidLockKeyError, InvalidOptionError } from '../errors.js';

/** One part of a lock key. Numbers and bigints count as their decimal text: `5`, `5n` and `'5'` are the same part. */
export type LockKeyPart = string | number | bigint;

/** What names an advisory lock: a string, a number/bigint, or an array of parts (`['account', id]`). */
export type LockKey = LockKeyPart | readonly LockKeyPart[];

/** The namespace applications use unless they pick another. */
export const DEFAULT_LOCK_NAMESPACE = 0;
/** Reserved for nestjs-txlock's own locks: LockService and @AdvisoryLock() refuse it. */
export const RESERVED_LOCK_NAMESPACE = 15;

const HASH_BITS = 60n;
const HASH_MASK = (1n << HASH_BITS) - 1n;

/**
 * The 64-bit key PostgreSQL's single-bigint advisory lock functions receive for `key` in `namespace`.
 *
 * Derivation (stable; changing it is a breaking change, since old and new replicas would stop excluding
 * each other during a rolling deploy): the parts become text (numbers and bigints in decimal), the text
 * list is JSON-encoded (`'a'` → `["a"]`, so `['a:b']` and `['a', 'b']` differ), SHA-256 is taken over its
 * UTF-8 bytes, and the first 8 bytes (big-endian) keep their low 60 bits. The top 4 bits hold the
 * namespace (0–14 for applications; 15 for nestjs-txlock's own locks, such as
 * table creation at bootstrap), so keys of different namespaces never collide.
 * Within a namespace two different keys share a value with odds about n²/2⁶¹ for n keys in use
 * (under one in two million for a million keys); a collision only makes them wait for each other.
 *
 * Computed in the application, so the lock statement carries an integer the library made and can travel
 * in the same round trip as BEGIN.
 *
 * @example
 * advisoryLockKey(['account', 42]); // the key `@AdvisoryLock({ key: (id) => ['account', id] })` takes for 42
 * // SELECT * FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 -- classid/objid are its halves
 */
export function advisoryLockKey(key: LockKey, namespace: number = DEFAULT_LOCK_NAMESPACE): bigint {
  validateNamespace(namespace, true);
  return advisoryLockKeyOfText(lockKeyText(key), namespace);
}

/**
 * advisoryLockKey() of a key already turned into its canonical text (lockKeyText()), in a namespace already
 * validated: for a lock call, which also names the lock by that text and so derives it once.
 */
export function advisoryLockKeyOfText(text: string, namespace: number): bigint {
  return BigInt.asIntN(64, (BigInt(namespace) << HASH_BITS) | keyHash(text));
}

// Hot keys (one account, one job) are derived again on every call: the last hashes are kept, a bounded number.
const HASHES = new Map<string, bigint>();
const MAX_HASHES = 4_096;

function keyHash(text: string): bigint {
  let hash = HASHES.get(text);
  if (hash === undefined) {
    hash = createHash('sha256').update(text).digest().readBigUInt64BE(0) & HASH_MASK;
    if (HASHES.size >= MAX_HASHES) HASHES.delete(HASHES.keys().next().value!);
    HASHES.set(text, hash);
  }
  return hash;
}

/** The canonical text of a key: the JSON list of its parts as strings. Also names the lock in error messages. */
export function lockKeyText(key: LockKey): string {
  const parts = Array.isArray(key) ? (key as readonly unknown[]) : [key];
  if (parts.length === 0) throw new InvalidLockKeyError(key, 'an empty array names no lock');
  return JSON.stringify(parts.map((part) => partText(part, key)));
}

// Strings must be well-formed UTF-16, as counter keys, lease names and single-flight keys must: the JSON
// encoding below would keep '\uD800' and '\uDBFF' apart, but the library refuses such keys everywhere alike.
function partText(part: unknown, key: unknown): string {
  if (typeof part === 'string') {
    if (!isWellFormed(part)) throw new InvalidLockKeyError(key, `a string part must be ${WELL_FORMED_TEXT}`);
    return part;
  }
  if (typeof part === 'bigint') return part.toString();
  if (typeof part === 'number') {
    if (!Number.isFinite(part)) throw new InvalidLockKeyError(key, `${part} is not a finite number`);
    return String(part);
  }
  throw new InvalidLockKeyError(key, `a part of type ${part === null ? 'null' : typeof part} is not a string, number or bigint`);
}

/**
 * Throws InvalidOptionError unless `namespace` is an application namespace (0–14); with `allowReserved`,
 * also 15, for computing (not taking from application code) the keys of nestjs-txlock's own locks.
 */
export function validateNamespace(namespace: unknown, allowReserved = false): void {
  const max = allowReserved ? RESERVED_LOCK_NAMESPACE : RESERVED_LOCK_NAMESPACE - 1;
  if (typeof namespace !== 'number' || !Number.isInteger(namespace) || namespace < 0 || namespace > max) {
    throw new InvalidOptionError('lock namespace', namespace, `an integer from 0 to ${max} (${RESERVED_LOCK_NAMESPACE} is reserved for nestjs-txlock)`);
  }
}

/**
 * The default key of a decorated method: its `ClassName.methodName` followed by each argument as text
 * (strings, numbers and bigints as they are; anything else as JSON with sorted object keys, so `{a, b}` and
 * `{b, a}` lock the same). An argument that JSON cannot express (a request object, a cycle) is refused:
 * give the decorator a `key` then.
 */
export function defaultMethodKey(methodName: string, args: readonly unknown[]): string[] {
  return [methodName, ...args.map((arg, index) => argumentText(arg, index, methodName))];
}

function argumentText(arg: unknown, index: number, methodName: string): string {
  if (typeof arg === 'string') return arg;
  if (typeof arg === 'number' || typeof arg === 'bigint') return String(arg);
  try {
    return JSON.stringify(arg, sortedReplacer) ?? 'undefined';
  } catch (error) {
    // A cycle overflows the stack here rather than being named: the sorted copies are new objects each time.
    const why = error instanceof RangeError ? 'it refers to itself' : String((error as Error).message).split('\n')[0];
    throw new InvalidLockKeyError(
      arg,
      `argument ${index + 1} of ${methodName} (${describeValue(arg)}) has no JSON form (${why}), so it cannot be part of the ` +
        `default key; give the decorator a key made of what identifies the work, e.g. key: (req) => ['report', req.params.id]`,
    );
  }
}

function sortedReplacer(this: unknown, _key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  // Plain objects and DTO instances: their own fields in sorted order. Dates keep their toJSON form;
  // a Request or socket fails on its cycles.
  if (value && typeof value === 'object' && !Array.isArray(value) && !('toJSON' in value)) {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, (value as Record<string, unknown>)[k]]));
  }
  return value;
}
