import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { PointsService } from './points.service.js';
import { UnsafePointsService } from './unsafe-points.service.js';
import { User } from './user.entity.js';
import { UsersController } from './users.controller.js';

/** Points (seed 003): read-modify-write under an advisory lock, and the F()-style increment. */
@Module({
  imports: [TypeOrmModule.forFeature([User])],
  controllers: [UsersController],
  providers: [PointsService, UnsafePointsService],
})
export class PointsModule {}
