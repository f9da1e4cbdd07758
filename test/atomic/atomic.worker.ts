import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AtomicService, TxLockModule } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';
import { ATOMIC_ENTITIES, Domain, Session } from './entities.js';

/** Input of one process. */
export interface AtomicWorkerInput {
  /** session: `callers` concurrent getOrCreate of one key; bulk / naive-bulk: import `names` (this worker's share). */
  mode: 'session' | 'bulk' | 'naive-bulk';
  key?: string;
  callers?: number;
  names?: string[][];
}

/** What a process saw. */
export interface AtomicWorkerOutput {
  ids: string[];
  created: number;
  failures: string[];
}

workerMain<AtomicWorkerInput, AtomicWorkerOutput>(async (input, { url, index }) => {
  @Module({
    imports: [TypeOrmModule.forRoot({ type: 'postgres', url, entities: ATOMIC_ENTITIES, extra: { max: 5 } }), TxLockModule.forRoot({})],
  })
  class AtomicWorkerModule {}

  const app = await NestFactory.createApplicationContext(AtomicWorkerModule, { logger: ['error'] });
  const atomic = app.get(AtomicService);
  const output: AtomicWorkerOutput = { ids: [], created: 0, failures: [] };
  try {
    if (input.mode === 'session') {
      await Promise.all(
        Array.from({ length: input.callers! }, async () => {
          const { entity, created } = await atomic.getOrCreate(Session, { key: input.key! });
          output.ids.push(entity.id);
          if (created) output.created++;
        }),
      );
    } else {
      const names = input.names![index]!;
      if (input.mode === 'bulk') {
        const result = await atomic.bulkGetOrCreate(Domain, names.map((name) => ({ name })), { conflictColumns: ['name'] });
        output.ids = result.entities.map((d, i) => (d.name === names[i] ? `${d.id}:${d.name}` : 'mismatch'));
        output.created = result.created.filter(Boolean).length;
      } else {
        // The seed's import: find the names that exist, insert the others in one multi-row INSERT; five
        // imports at once per process, as a worker pool would run them.
        const repo = app.get(DataSource).getRepository(Domain);
        await Promise.all(
          Array.from({ length: 5 }, async () => {
            try {
              const existing = new Set((await repo.find({ select: { name: true } })).map((d) => d.name));
              const missing = [...new Set(names)].filter((name) => !existing.has(name));
              await repo.insert(missing.map((name) => ({ name })));
              output.created += missing.length;
            } catch (error) {
              output.failures.push(String(error));
            }
          }),
        );
      }
    }
  } finally {
    await app.close();
  }
  return output;
});
