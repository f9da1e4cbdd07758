import { Controller, HttpCode, HttpStatus, Param, Post } from '@nestjs/common';
import { SessionsService } from './sessions.service.js';
import { UnsafeSessionsService } from './unsafe-sessions.service.js';

/** Get-or-create of the session of a client key: POST is safe to repeat, concurrently too. */
@Controller('sessions')
export class SessionsController {
  constructor(
    private readonly sessions: SessionsService,
    private readonly unsafeSessions: UnsafeSessionsService,
  ) {}

  @Post(':clientKey')
  @HttpCode(HttpStatus.OK)
  getOrCreate(@Param('clientKey') clientKey: string) {
    return this.sessions.getOrCreate(clientKey);
  }

  @Post(':clientKey/unsafe')
  @HttpCode(HttpStatus.OK)
  getOrCreateUnsafe(@Param('clientKey') clientKey: string) {
    return this.unsafeSessions.getOrCreate(clientKey);
  }
}
