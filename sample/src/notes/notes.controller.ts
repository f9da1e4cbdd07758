import { Body, Controller, Get, Headers, Post, Put } from '@nestjs/common';
import type { Note } from './note.entity.js';
import { NotesService } from './notes.service.js';

/** Notes over HTTP; the tenant is the request's `x-tenant-id` header (see tenantSettings()). */
@Controller('notes')
export class NotesController {
  constructor(private readonly notes: NotesService) {}

  @Get()
  list(): Promise<Note[]> {
    return this.notes.list();
  }

  @Put()
  async rewriteAll(@Body() body: { body: string }): Promise<{ rewritten: number }> {
    return { rewritten: await this.notes.rewriteAll(body.body) };
  }

  @Post()
  async create(@Headers('x-tenant-id') tenant: string, @Body() body: { slug: string; body: string }): Promise<{ id: number; created: boolean }> {
    const { note, created } = await this.notes.getOrCreate(tenant, body.slug, body.body);
    return { id: note.id, created };
  }
}
