import type { EntityMetadata } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';

/**
 * The primary key, unique constraint or (non-partial) unique index of the entity whose columns all appear in
 * `columns`: the ON CONFLICT target that makes PostgreSQL refuse a second row with these values. Undefined
 * when there is none, and the database cannot enforce uniqueness for this lookup.
 *
 * Keys without a column in `nullColumns` (columns given a NULL) come first: a NULL never conflicts in a
 * NULLS DISTINCT key, so a key the NULL does not touch is the better guard. Then the smallest key wins.
 */
export function findUniqueKey(
  metadata: EntityMetadata,
  columns: readonly ColumnMetadata[],
  nullColumns: readonly ColumnMetadata[] = [],
): ColumnMetadata[] | undefined {
  const candidates = [
    metadata.primaryColumns,
    ...metadata.uniques.map((unique) => unique.columns),
    ...metadata.indices.filter((index) => index.isUnique && !index.where).map((index) => index.columns),
  ];
  const touchesNull = (key: ColumnMetadata[]) => (key.some((column) => nullColumns.includes(column)) ? 1 : 0);
  return candidates
    .filter((key) => key.length > 0 && key.every((column) => columns.includes(column)))
    .sort((a, b) => touchesNull(a) - touchesNull(b) || a.length - b.length)[0];
}
