/**
 * Gives `target` its own `property` (`value`), shadowing the method of its prototype (a transaction's EntityManager's
 * query() and transaction()). By plain assignment: Object.defineProperty() with other attributes than an assignment's
 * turns the object into a slower, dictionary-mode one (about 0.3 µs each, and every later property access pays), and
 * this runs on every transaction.
 */
export function shadowMethod(target: object, property: string, value: unknown): void {
  (target as Record<string, unknown>)[property] = value;
}
