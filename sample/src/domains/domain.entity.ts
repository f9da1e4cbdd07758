import { Column, Entity, PrimaryGeneratedColumn, Unique } from 'typeorm';

/** A domain name, imported in batches by several workers at once (seed 004). */
@Entity('domains')
@Unique('domains_name_key', ['name'])
export class Domain {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;
}
