import { In, type Repository } from 'typeorm';
import type { Domain } from './domain.entity.js';

/** What an import reports: how many of its names it inserted and how many already existed. */
export interface ImportResult {
  created: number;
  existing: number;
}

/**
 * Seed 004's bulk import: look up which names exist, insert the rest. Between the look-up and the insert
 * another worker can insert the same names, and this one dies on the unique constraint, unless a table
 * lock keeps every other importer out for the duration.
 */
export async function insertMissing(domains: Repository<Domain>, names: string[]): Promise<ImportResult> {
  const unique = [...new Set(names)];
  const found = await domains.findBy({ name: In(unique) });
  const known = new Set(found.map((domain) => domain.name));
  const missing = unique.filter((name) => !known.has(name));
  if (missing.length > 0) await domains.insert(missing.map((name) => ({ name })));
  return { created: missing.length, existing: unique.length - missing.length };
}
