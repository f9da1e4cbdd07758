import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Session, UnconstrainedSession } from './session.entity.js';
import { SessionsController } from './sessions.controller.js';
import { SessionsService } from './sessions.service.js';
import { UnsafeSessionsService } from './unsafe-sessions.service.js';

/** Sessions: one row per client key however many requests race to create it. */
@Module({
  imports: [TypeOrmModule.forFeature([Session, UnconstrainedSession])],
  controllers: [SessionsController],
  providers: [SessionsService, UnsafeSessionsService],
})
export class SessionsModule {}
