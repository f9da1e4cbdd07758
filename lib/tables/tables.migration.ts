import type { MigrationInterface, QueryRunner } from 'typeorm';
import { CounterSql } from '../counters/counter.sql.js';
import { leaseSql } from '../leases/lease.sql.js';
import { singleFlightSql } from '../single-flight/single-flight.sql.js';

const COUNTERS = '"txlock_counters"';
const LEASES = '"txlock_leases"';
const SINGLE_FLIGHT = '"txlock_single_flight"';

/**
 * A TypeORM migration that creates every table the library uses, under their default names (`txlock_counters`,
 * `txlock_leases`, `txlock_single_flight`), with the same DDL `autoCreate` runs. Add it to the DataSource's
 * `migrations` and run them as usual. For tables under other names, use `autoCreate` or a migration of your own.
 *
 * @example
 * TypeOrmModule.forRoot({ type: 'postgres', url, migrations: [TxLockTablesMigration, ...yours], migrationsRun: true })
 */
export class TxLockTablesMigration implements MigrationInterface {
  /** TypeORM orders migrations by the timestamp that ends their name. */
  readonly name = 'TxLockTables1764230400000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(new CounterSql(COUNTERS).createTable);
    await queryRunner.query(leaseSql.createTable(LEASES));
    await queryRunner.query(singleFlightSql.createTable(SINGLE_FLIGHT));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const table of [SINGLE_FLIGHT, LEASES, COUNTERS]) await queryRunner.query(`DROP TABLE IF EXISTS ${table}`);
  }
}
