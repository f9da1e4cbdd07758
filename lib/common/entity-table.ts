import type { DataSource, EntityMetadata, EntityTarget, ObjectLiteral } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import type { RelationMetadata } from 'typeorm/metadata/RelationMetadata.js';
import { InvalidOptionError } from '../errors.js';
import { quoteIdentifier, type SqlParams } from './sql.js';

/** Column values of an entity by property name, as callers pass them in `where`, `defaults` and `values`. */
export type EntityValues<Entity> = { [Property in keyof Entity]?: Entity[Property] };

/** One column with the value to bind for it, already converted the way TypeORM would persist it. */
export interface BoundColumn {
  column: ColumnMetadata;
  value: unknown;
}

/**
 * An entity's table as raw SQL sees it: quoted names from TypeORM metadata, values prepared by the
 * driver (transformers, json, dates), and rows hydrated back into entities. All identifiers come from
 * metadata and are quoted; all values are bound. Nothing a caller passes is pasted into SQL.
 */
export class EntityTable<Entity extends ObjectLiteral> {
  /** The quoted, schema-qualified table name. */
  readonly name: string;

  private constructor(
    readonly metadata: EntityMetadata,
    private readonly dataSource: DataSource,
  ) {
    const table = quoteIdentifier(metadata.tableName);
    this.name = metadata.schema ? `${quoteIdentifier(metadata.schema)}.${table}` : table;
  }

  static of<Entity extends ObjectLiteral>(dataSource: DataSource, target: EntityTarget<Entity>): EntityTable<Entity> {
    return new EntityTable<Entity>(dataSource.getMetadata(target), dataSource);
  }

  /** The entity's display name, for error messages. */
  get entityName(): string {
    return this.metadata.name;
  }

  /** The column of a property, or InvalidOptionError naming the entity. Relation-only columns are refused. */
  column(property: string, argument: string): ColumnMetadata {
    const column = this.metadata.findColumnWithPropertyPath(property);
    if (!column || column.isVirtual) {
      throw new InvalidOptionError(`${argument} property`, property, `a column property of ${this.metadata.name}`);
    }
    return column;
  }

  /**
   * The columns a property stands for: its own column, or the join columns of a many-to-one or owning one-to-one
   * relation (several for a composite key). InvalidOptionError naming the entity for anything else.
   */
  columns(property: string, argument: string): ColumnMetadata[] {
    return this.joinedRelation(property)?.joinColumns ?? [this.column(property, argument)];
  }

  /**
   * Each property of `values` with its column and persisted value; undefined properties are left out. A relation
   * (many-to-one, owning one-to-one) stands for its join columns, as in TypeORM's save(): the related entity, or an
   * object with the referenced columns (`{ id }`), gives their values; null makes them NULL.
   */
  bind(values: ObjectLiteral, argument: string): BoundColumn[] {
    return Object.keys(values)
      .filter((property) => values[property] !== undefined)
      .flatMap((property) => {
        const relation = this.joinedRelation(property);
        if (relation) return this.bindRelation(relation, values[property], `${argument}.${property}`);
        const column = this.column(property, argument);
        return [{ column, value: this.persisted(column, values[property]) }];
      });
  }

  /** `bind()` for a `where`, which must name at least one column (an empty one would match every row). */
  bindWhere(where: ObjectLiteral): BoundColumn[] {
    const bound = this.bind(where, 'where');
    if (bound.length === 0) throw new InvalidOptionError('where', where, `at least one column property of ${this.metadata.name}`);
    return bound;
  }

  /**
   * Refuses a property of `values` that insertColumns() would silently drop (`manager.create()` ignores unknown
   * properties): InvalidOptionError naming `argument`, unless the property is a column, an embedded, or a
   * many-to-one / owning one-to-one relation (its foreign key is inserted). Undefined properties are ignored.
   */
  checkInsertProperties(values: ObjectLiteral, argument: string): void {
    for (const property of Object.keys(values)) {
      if (values[property] !== undefined && !this.isInsertable(property)) {
        throw new InvalidOptionError(`${argument} property`, property, `a column property of ${this.metadata.name}`);
      }
    }
  }

  // A relation whose foreign key this table holds, unless the property is a column of its own (`publisherId`).
  private joinedRelation(property: string): RelationMetadata | undefined {
    if (this.metadata.findColumnWithPropertyPathStrict(property)) return undefined;
    const relation = this.metadata.findRelationWithPropertyPath(property);
    return relation && (relation.isManyToOne || relation.isOneToOneOwner) && relation.joinColumns.length > 0 ? relation : undefined;
  }

  // The join columns' values from a related entity or `{ id }` (the referenced columns), from null, or, for a
  // single join column, from the referenced value itself (`author: 5`), as save() takes them.
  private bindRelation(relation: RelationMetadata, related: unknown, option: string): BoundColumn[] {
    const single = relation.joinColumns.length === 1;
    return relation.joinColumns.map((column) => {
      const referenced = column.referencedColumn!;
      let value: unknown;
      if (related === null) value = null;
      else if (typeof related === 'object') value = referenced.getEntityValue(related as ObjectLiteral);
      else if (single) value = related;
      if (value === undefined) {
        throw new InvalidOptionError(
          option,
          related,
          `a ${relation.inverseEntityMetadata.name} with its ${relation.joinColumns.map((c) => c.referencedColumn!.propertyPath).join(', ')} ` +
            `(the value of ${relation.joinColumns.map((c) => c.databaseName).join(', ')}), or null`,
        );
      }
      return { column, value: this.persisted(column, value) };
    });
  }

  private isInsertable(property: string): boolean {
    const { metadata } = this;
    if (metadata.findColumnWithPropertyPathStrict(property)) return true;
    const relation = metadata.findRelationWithPropertyPath(property);
    if (relation) return relation.isManyToOne || relation.isOneToOneOwner;
    return metadata.findEmbeddedWithPropertyPath(property) !== undefined;
  }

  /** The property path of a database column, for messages; the column name itself when no property maps to it. */
  propertyOf(databaseName: string): string {
    return this.metadata.findColumnWithDatabaseName(databaseName)?.propertyPath ?? databaseName;
  }

  /** `"a" = $1 AND "b" IS NULL` for a bound `where`, on the table or on `alias`. */
  whereSql(where: BoundColumn[], params: SqlParams, alias?: string): string {
    const prefix = alias ? `${alias}.` : '';
    return where
      .map(({ column, value }) => {
        const name = prefix + quoteIdentifier(column.databaseName);
        return value === null ? `${name} IS NULL` : `${name} = ${params.add(value)}`;
      })
      .join(' AND ');
  }

  /**
   * The columns and values to INSERT for a new entity made from `values`: built with `manager.create()`
   * so class field initialisers apply, minus columns left undefined (the database default applies),
   * plus the version column at 1 as TypeORM's own insert does. A relation's foreign key column has no
   * property of its own (it is virtual) but is inserted: its value comes from the related entity.
   */
  insertColumns(values: ObjectLiteral): BoundColumn[] {
    const draft = this.dataSource.manager.create(this.metadata.target as EntityTarget<Entity>, values as never) as ObjectLiteral;
    const bound: BoundColumn[] = [];
    for (const column of this.metadata.columns) {
      if ((column.isVirtual && !column.relationMetadata) || !column.isInsert) continue;
      let value: unknown = column.getEntityValue(draft);
      if (value === undefined && column === this.metadata.versionColumn) value = 1;
      if (value !== undefined) bound.push({ column, value: this.persisted(column, value) });
    }
    return bound;
  }

  /** An entity from a raw row whose keys are database column names (`SELECT *` / `RETURNING *`). */
  hydrate(raw: ObjectLiteral): Entity {
    const entity = this.metadata.create() as Entity;
    for (const column of this.metadata.columns) {
      if (column.isVirtual || !(column.databaseName in raw)) continue;
      column.setEntityValue(entity, this.dataSource.driver.prepareHydratedValue(raw[column.databaseName], column));
    }
    return entity;
  }

  private persisted(column: ColumnMetadata, value: unknown): unknown {
    return value === null ? null : this.dataSource.driver.preparePersistentValue(value, column);
  }
}
