import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { NotificationsModule } from '../notifications/notifications.module.js';
import { Like } from './like.entity.js';
import { LikesService } from './likes.service.js';
import { Post } from './post.entity.js';
import { PostsController } from './posts.controller.js';
import { PostsService } from './posts.service.js';
import { UnsafeLikesService } from './unsafe-likes.service.js';

/** Posts and likes: idempotent likes and an exact likes_count. */
@Module({
  // Plain @InjectRepository repositories for both twins: inside our transactions they join them.
  imports: [TypeOrmModule.forFeature([Post, Like]), NotificationsModule],
  controllers: [PostsController],
  providers: [PostsService, LikesService, UnsafeLikesService],
})
export class PostsModule {}
