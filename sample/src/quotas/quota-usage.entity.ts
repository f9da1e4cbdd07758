import { Column, Entity, PrimaryColumn } from 'typeorm';

/** The naive quota's own table: one row per user and day, read and written back by the application. */
@Entity('quota_usage')
export class QuotaUsage {
  @PrimaryColumn()
  key!: string;

  @Column({ type: 'integer', default: 0 })
  used!: number;
}
