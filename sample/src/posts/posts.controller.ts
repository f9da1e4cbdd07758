import { BadRequestException, Body, Controller, Delete, Get, Param, ParseIntPipe, Post as HttpPost, Put } from '@nestjs/common';
import { NotificationsService } from '../notifications/notifications.service.js';
import { LikesService } from './likes.service.js';
import type { Post } from './post.entity.js';
import { PostsService, type PostView } from './posts.service.js';
import { UnsafeLikesService } from './unsafe-likes.service.js';

/**
 * Posts and likes. PUT to like (idempotent per user), DELETE to unlike, `/unsafe` for the naive twin; a like notifies
 * the author through the outbox (`/after-commit`: through an afterCommit hook, the demo's control).
 */
@Controller('posts')
export class PostsController {
  constructor(
    private readonly posts: PostsService,
    private readonly likes: LikesService,
    private readonly unsafeLikes: UnsafeLikesService,
    private readonly notificationsService: NotificationsService,
  ) {}

  @HttpPost()
  create(@Body() body: { title?: unknown }): Promise<Post> {
    if (typeof body?.title !== 'string' || body.title === '') throw new BadRequestException('title must be a non-empty string');
    return this.posts.create(body.title);
  }

  @Get(':id')
  view(@Param('id', ParseIntPipe) id: number): Promise<PostView> {
    return this.posts.view(id);
  }

  @Put(':id/likes/:userId')
  like(@Param('id', ParseIntPipe) id: number, @Param('userId') userId: string) {
    return this.likes.like(id, userId);
  }

  @Delete(':id/likes/:userId')
  unlike(@Param('id', ParseIntPipe) id: number, @Param('userId') userId: string) {
    return this.likes.unlike(id, userId);
  }

  /** The like, with the author's notification sent by an afterCommit hook instead of the outbox (the demo's control). */
  @Put(':id/likes/:userId/after-commit')
  likeNotifyingAfterCommit(@Param('id', ParseIntPipe) id: number, @Param('userId') userId: string) {
    return this.likes.likeNotifyingAfterCommit(id, userId);
  }

  @Get(':id/notifications')
  async notifications(@Param('id', ParseIntPipe) id: number): Promise<{ count: number }> {
    return { count: await this.notificationsService.count(id) };
  }

  @Put(':id/likes/:userId/unsafe')
  likeUnsafe(@Param('id', ParseIntPipe) id: number, @Param('userId') userId: string) {
    return this.unsafeLikes.like(id, userId);
  }
}
