import { BadRequestException, Body, Controller, Delete, Get, Param, ParseIntPipe, Post as HttpPost, Put } from '@nestjs/common';
import { LikesService } from './likes.service.js';
import type { Post } from './post.entity.js';
import { PostsService, type PostView } from './posts.service.js';
import { UnsafeLikesService } from './unsafe-likes.service.js';

/** Posts and likes. PUT to like (idempotent per user), DELETE to unlike, `/unsafe` for the naive twin. */
@Controller('posts')
export class PostsController {
  constructor(
    private readonly posts: PostsService,
    private readonly likes: LikesService,
    private readonly unsafeLikes: UnsafeLikesService,
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

  @Put(':id/likes/:userId/unsafe')
  likeUnsafe(@Param('id', ParseIntPipe) id: number, @Param('userId') userId: string) {
    return this.unsafeLikes.like(id, userId);
  }
}
