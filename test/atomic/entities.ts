import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, Unique, VersionColumn } from 'typeorm';

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

/** All entities of the atomic tests. */
export const ATOMIC_ENTITIES = [Session, LooseSession, Domain, Setting];
