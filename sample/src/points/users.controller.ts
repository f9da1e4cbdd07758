import { BadRequestException, Body, Controller, Get, HttpCode, HttpStatus, Param, ParseIntPipe, Post } from '@nestjs/common';
import { PointsService } from './points.service.js';
import { UnsafePointsService } from './unsafe-points.service.js';
import type { User } from './user.entity.js';

/** Users and their points (seed 003): three ways to award points, two of them safe. */
@Controller('users')
export class UsersController {
  constructor(
    private readonly points: PointsService,
    private readonly unsafePoints: UnsafePointsService,
  ) {}

  @Post()
  create(@Body() body: { name?: unknown }): Promise<User> {
    if (typeof body?.name !== 'string' || body.name === '') throw new BadRequestException('name must be a non-empty string');
    return this.points.createUser(body.name);
  }

  @Get(':id')
  get(@Param('id', ParseIntPipe) id: number): Promise<User> {
    return this.points.getUser(id);
  }

  /** Read, compute in code, save: serialised per user by an advisory lock. */
  @Post(':id/points')
  @HttpCode(HttpStatus.OK)
  award(@Param('id', ParseIntPipe) id: number) {
    return this.points.awardLocked(id);
  }

  /** Compute in code, then add in the database (F()-style): no lock needed. */
  @Post(':id/points/increment')
  @HttpCode(HttpStatus.OK)
  increment(@Param('id', ParseIntPipe) id: number) {
    return this.points.awardIncrement(id);
  }

  @Post(':id/points/unsafe')
  @HttpCode(HttpStatus.OK)
  awardUnsafe(@Param('id', ParseIntPipe) id: number) {
    return this.unsafePoints.award(id);
  }
}
