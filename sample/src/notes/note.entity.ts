import { Column, Entity, PrimaryGeneratedColumn, Unique } from 'typeorm';

/**
 * A note of one tenant. The table has row-level security (notes-rls.ts): whatever a query says, PostgreSQL shows and
 * accepts only the rows of the tenant named by the transaction's `app.tenant_id` setting.
 */
@Entity('notes')
@Unique('notes_tenant_slug_key', ['tenantId', 'slug'])
export class Note {
  @PrimaryGeneratedColumn()
  id!: number;

  /** Filled in by the database from the transaction's setting when the app leaves it out. */
  @Column({ name: 'tenant_id', default: () => "current_setting('app.tenant_id')" })
  tenantId!: string;

  @Column()
  slug!: string;

  @Column()
  body!: string;
}
