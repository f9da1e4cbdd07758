// A surrogate half without its partner. Without the `u` flag the pattern sees UTF-16 code units, which is
// exactly what we need to find them.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * True when `text` is well-formed UTF-16, i.e. has no lone surrogate (String.prototype.isWellFormed, which the
 * ES2022 lib we compile against does not declare). A lone surrogate has no UTF-8 form: pg and Buffer replace it
 * with U+FFFD, so `'\uD800'` and `'\uDBFF'` would reach PostgreSQL as the same text.
 */
export function isWellFormed(text: string): boolean {
  return !LONE_SURROGATE.test(text);
}

/** What a key or name must be, for error messages: "a ... must be " + WELL_FORMED_TEXT. */
export const WELL_FORMED_TEXT =
  'well-formed UTF-16 (no lone surrogate: UTF-8 and PostgreSQL cannot carry one, so different strings would become the same text)';
