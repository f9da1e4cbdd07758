import { Check, Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** A row per insert operation; `v` < 0 is refused by the CHECK constraint (the "bad" statement). */
@Entity('model_item')
@Check('model_item_v_not_negative', '"v" >= 0')
export class ModelItem {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', unique: true })
  label!: string;

  @Column({ type: 'int', default: 0 })
  v!: number;
}

/** The get-or-create table: one row per `key`, guaranteed by its unique constraint. */
@Entity('model_goc')
export class ModelGoc {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', unique: true })
  key!: string;

  @Column({ type: 'int', default: 0 })
  v!: number;
}
