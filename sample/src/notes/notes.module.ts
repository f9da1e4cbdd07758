import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Note } from './note.entity.js';
import { NotesController } from './notes.controller.js';
import { NotesService } from './notes.service.js';

/**
 * Multi-tenant notes with row-level security (docs/production.md, "Tenant settings and row-level security"). Needs
 * the table from notesRlsStatements(), TxLockModule's `settings: tenantSettings`, and a DataSource connecting as a
 * role that is neither superuser nor table owner nor BYPASSRLS: superusers pass every policy. It is not part of
 * AppModule, whose demo runs as the database's owner; test/e2e/notes.spec.ts runs it.
 */
@Module({
  imports: [TypeOrmModule.forFeature([Note])],
  controllers: [NotesController],
  providers: [NotesService],
})
export class NotesModule {}
