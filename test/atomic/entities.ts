import { Column, CreateDateColumn, Entity, JoinColumn, ManyToOne, OneToMany, PrimaryColumn, PrimaryGeneratedColumn, Unique, VersionColumn } from 'typeorm';

/** One session per client key (seed 004): the unique key is what makes getOrCreate exact. */
@Entity('atomic_session')
export class Session {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ type: 'text', unique: true })
  key!: string;

  /** A second unique column: a clash here is a real error, never swallowed. */
  @Column({ type: 'text', unique: true, nullable: true })
  token!: string | null;

  @Column({ type: 'int', nullable: true })
  userId!: number | null;

  @Column({ type: 'jsonb', default: {} })
  data!: Record<string, unknown>;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt!: Date;

  /** A class initialiser: applied to created rows as TypeORM's own save would. */
  @Column({ type: 'text' })
  origin: string = 'web';
}

/** The same without any unique constraint: what a naive get-or-create duplicates. */
@Entity('atomic_loose_session')
export class LooseSession {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  key!: string;
}

/** Domains imported in bulk by several workers (seed 004). */
@Entity('atomic_domain')
@Unique(['name'])
export class Domain {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'text', default: 'com' })
  tld!: string;
}

/** A per-user setting: unique on two columns, with a version column. */
@Entity('atomic_setting')
@Unique(['userId', 'name'])
export class Setting {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'int' })
  userId!: number;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'text', nullable: true })
  value!: string | null;

  @VersionColumn()
  version!: number;
}

/** A setting per tenant, where a NULL tenant means "every tenant": a nullable column in the unique key. */
@Entity('atomic_tenant_setting')
@Unique(['tenant', 'name'])
export class TenantSetting {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', nullable: true })
  tenant!: string | null;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'text', nullable: true })
  value!: string | null;
}

/** The constraint the tests turn NULLS NOT DISTINCT (PostgreSQL 15+; TypeORM cannot declare it). */
export const GLOBAL_SETTING_KEY = 'atomic_global_setting_key';

/** TenantSetting again, for a unique key made NULLS NOT DISTINCT: there a NULL tenant is one row. */
@Entity('atomic_global_setting')
@Unique(GLOBAL_SETTING_KEY, ['tenant', 'name'])
export class GlobalSetting {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', nullable: true })
  tenant!: string | null;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'text', nullable: true })
  value!: string | null;
}

/** A book: `name` is NOT NULL without a default, so only a new book needs it, not an update. */
@Entity('atomic_book')
@Unique(['isbn'])
export class Book {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  isbn!: string;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'int', nullable: true })
  publisherId!: number | null;

  @Column({ type: 'text', nullable: true })
  shelf!: string | null;

  @VersionColumn()
  version!: number;
}

/** An author: the one side of Novel's relation. */
@Entity('atomic_author')
export class Author {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  name!: string;

  @OneToMany(() => Novel, (novel) => novel.author)
  novels!: Novel[];
}

/** A novel whose author is a many-to-one relation without a foreign key property of its own. */
@Entity('atomic_novel')
@Unique(['title'])
export class Novel {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  title!: string;

  @ManyToOne(() => Author, (author) => author.novels, { nullable: true })
  author!: Author | null;
}

/** A publisher: the one side of Edition's relation. */
@Entity('atomic_publisher')
export class Publisher {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  name!: string;
}

/**
 * A yearly edition per publisher: a many-to-one relation that shares its join column with a foreign key property
 * of its own (`publisherId`), in the unique key, as peers' entities often have it.
 */
@Entity('atomic_edition')
@Unique(['publisher', 'year'])
export class Edition {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'int' })
  publisherId!: number;

  @ManyToOne(() => Publisher)
  @JoinColumn({ name: 'publisherId' })
  publisher!: Publisher;

  @Column({ type: 'int' })
  year!: number;

  @Column({ type: 'text', nullable: true })
  title!: string | null;
}

/** A region with a composite primary key: relations to it have two join columns. */
@Entity('atomic_region')
export class Region {
  @PrimaryColumn({ type: 'text' })
  country!: string;

  @PrimaryColumn({ type: 'text' })
  code!: string;
}

/** A store per region and name: the unique key holds a relation with two join columns. */
@Entity('atomic_store')
@Unique(['region', 'name'])
export class Store {
  @PrimaryGeneratedColumn()
  id!: number;

  @ManyToOne(() => Region)
  @JoinColumn([
    { name: 'regionCountry', referencedColumnName: 'country' },
    { name: 'regionCode', referencedColumnName: 'code' },
  ])
  region!: Region;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'int', default: 0 })
  visits!: number;
}

/** All entities of the atomic tests. */
export const ATOMIC_ENTITIES = [Session, LooseSession, Domain, Setting, TenantSetting, GlobalSetting, Book, Author, Novel, Publisher, Edition, Region, Store];
