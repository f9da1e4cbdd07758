import type { EntityMetadata } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';

/**
 * The smallest primary key, unique constraint or (non-partial) unique index of the entity whose columns all
 * appear in `columns`: the ON CONFLICT target that makes PostgreSQL refuse a second row with these values.
 * Undefined when there is none, and the database cannot enforce uniqueness for this lookup.
 */
export function findUniqueKey(metadata: EntityMetadata, columns: readonly ColumnMetadata[]): ColumnMetadata[] | undefined {
  const candidates = [
    metadata.primaryColumns,
    ...metadata.uniques.map((unique) => unique.columns),
    ...metadata.indices.filter((index) => index.isUnique && !index.where).map((index) => index.columns),
  ];
  return candidates
    .filter((key) => key.length > 0 && key.every((column) => columns.includes(column)))
    .sort((a, b) => a.length - b.length)[0];
}
