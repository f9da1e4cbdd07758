/**
 * A new empty array for per-call state that will hold other per-call objects (queued work, held savepoints, hooks).
 * Not an array literal: once many arrays of one literal outlive a young-generation collection, V8 allocates that
 * literal's arrays in its old generation (allocation-site pretenuring), and a dead one there keeps what it holds, and
 * all that reaches, alive through young-generation collections until the next full one. For a transaction that is its
 * whole object graph (docs/performance.md, "Objects that outlive their transaction"). Array.of() has no allocation site.
 */
export function freshArray<T>(): T[] {
  return Array.of<T>();
}
