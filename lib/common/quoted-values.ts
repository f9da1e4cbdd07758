// The caller's values an error's message quotes (keys, lock names, option values), per error: telemetry leaves
// them out, so a key never reaches a span, while the caller still reads them in the error it catches.
const quoted = new WeakMap<object, string[]>();

// Text that is too common to be told apart from the library's own words: numbers, booleans, null, undefined.
const PLAIN = /^(?:-?[\d.e+]+|true|false|null|undefined|NaN|-?Infinity)$/;

/** Marks `texts`, as they appear in `error`'s message, as the caller's values. Returns `error`. */
export function quoteValues<E extends object>(error: E, ...texts: readonly string[]): E {
  const marked = texts.filter((text) => text.length > 0 && !PLAIN.test(text));
  if (marked.length > 0) quoted.set(error, [...(quoted.get(error) ?? []), ...marked]);
  return error;
}

/** `text` (a message or stack of `error`) with each of the caller's values `error` quotes replaced by `<redacted>`. */
export function withoutQuotedValues(error: unknown, text: string): string {
  const values = typeof error === 'object' && error !== null ? quoted.get(error) : undefined;
  if (!values) return text;
  // Longest first: a value that contains another is replaced whole.
  return [...values].sort((a, b) => b.length - a.length).reduce((result, value) => result.split(value).join('<redacted>'), text);
}
