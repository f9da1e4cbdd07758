import { InvalidOptionError, InvalidSettingError } from '../errors.js';

/** A value of a transaction setting: sent to PostgreSQL as text (`String(value)`). */
export type SettingValue = string | number | bigint | boolean;

/**
 * Settings a transaction sets for itself only (`set_config(name, value, true)` in its opening statements): custom
 * settings such as `app.tenant_id`, read by row-level-security policies with `current_setting('app.tenant_id', true)`.
 * They end with the transaction, so nothing leaks into the next user of the pooled connection, behind a pooler too.
 */
export type TransactionSettings = Readonly<Record<string, SettingValue>>;

/** One setting as it is sent: its validated name and its value as text. */
export type SettingEntry = readonly [name: string, value: string];

// A custom (placeholder) setting: `prefix.name`, each part an SQL identifier. Built-in settings (search_path,
// statement_timeout, role...) are not accepted: they would change how the library's own statements behave.
const CUSTOM_SETTING = /^[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)+$/;
const MAX_NAME_LENGTH = 63;

/**
 * The entries of `settings`, checked: names must be custom settings (`prefix.name`), values strings, numbers,
 * bigints or booleans without NUL. Throws InvalidSettingError (a bad name) or InvalidOptionError (a bad value)
 * before anything is sent. `undefined` reads as no settings.
 */
export function readSettings(settings: unknown, where: string): SettingEntry[] {
  if (settings === undefined) return [];
  if (typeof settings !== 'object' || settings === null || Array.isArray(settings)) {
    throw new InvalidOptionError(where, settings, "an object of custom settings, such as { 'app.tenant_id': tenantId }");
  }
  const entries: SettingEntry[] = [];
  for (const [name, value] of Object.entries(settings)) {
    if (!CUSTOM_SETTING.test(name) || name.length > MAX_NAME_LENGTH) throw new InvalidSettingError(name, where);
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'bigint' && typeof value !== 'boolean') {
      throw new InvalidOptionError(`${where} "${name}"`, value, 'a string, number, bigint or boolean (sent as text)');
    }
    if (typeof value === 'number' && !Number.isFinite(value)) throw new InvalidOptionError(`${where} "${name}"`, value, 'a finite number');
    const text = String(value);
    if (text.includes('\u0000')) throw new InvalidOptionError(`${where} "${name}"`, value, 'text without the NUL character (PostgreSQL text cannot hold it)');
    entries.push([name, text]);
  }
  return entries;
}

/**
 * `base` with `override`'s entries replacing those of the same name (a call's own settings over the module's).
 */
export function mergeSettings(base: readonly SettingEntry[], override: readonly SettingEntry[]): SettingEntry[] {
  if (override.length === 0) return [...base];
  if (base.length === 0) return [...override];
  const names = new Set(override.map(([name]) => name));
  return [...base.filter(([name]) => !names.has(name)), ...override];
}
