import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { SingleFlightService, TransactionHost, TxLockModule } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';
import { waitAtStartLine } from '../support/start-line.js';

/** Input of one process: `callers` concurrent requests for `key`; with `hang`, the computation never ends. */
export interface FlightInput {
  key: string;
  callers: number;
  ttlMs: number;
  computeMs: number;
  hang?: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Returns the JSON of the value each caller received.
workerMain<FlightInput, string[]>(async (input, { url }) => {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 4 } }),
      TxLockModule.forRoot({ singleFlight: { autoCreate: true } }),
    ],
  })
  class FlightModule {}

  const app = await NestFactory.createApplicationContext(FlightModule, { logger: ['error'] });
  try {
    const flights = app.get(SingleFlightService);
    const dataSource = app.get(DataSource);
    const tx = app.get(TransactionHost);
    const compute = async () => {
      // Counted outside the flight's transaction (which the DataSource's own calls would join), so the count
      // survives whatever happens to it.
      await tx.run({ propagation: 'NOT_SUPPORTED' }, () => dataSource.query('INSERT INTO computations (key, pid) VALUES ($1, $2)', [input.key, process.pid]));
      if (input.hang) {
        process.stdout.write('computing\n');
        await sleep(60_000);
      }
      await sleep(input.computeMs);
      return { computedBy: process.pid, report: [1, 2, 3] };
    };
    await waitAtStartLine(dataSource);
    const values = await Promise.all(
      Array.from({ length: input.callers }, () => flights.run(input.key, compute, { ttlMs: input.ttlMs }).then((v) => JSON.stringify(v))),
    );
    return values;
  } finally {
    await app.close();
  }
});
