import type { MigrationInterface, QueryRunner } from 'typeorm';
import { outboxSql } from './outbox.sql.js';

const OUTBOX = '"txlock_outbox"';

/**
 * A TypeORM migration that creates the outbox table under its default name (`txlock_outbox`), with the same DDL
 * `autoCreate` runs. A migration of its own rather than a part of TxLockTablesMigration, which apps that ran it
 * before the outbox existed would never run again.
 *
 * @example
 * TypeOrmModule.forRoot({ type: 'postgres', url, migrations: [TxLockTablesMigration, TxLockOutboxMigration, ...yours], migrationsRun: true })
 */
export class TxLockOutboxMigration implements MigrationInterface {
  /** TypeORM orders migrations by the timestamp that ends their name. */
  readonly name = 'TxLockOutbox1767225600000';

  async up(queryRunner: QueryRunner): Promise<void> {
    for (const statement of outboxSql.createTable(OUTBOX)) await queryRunner.query(statement);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE IF EXISTS ${OUTBOX}`);
  }
}
