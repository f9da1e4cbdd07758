import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Like } from './like.entity.js';
import { Post } from './post.entity.js';

/**
 * The naive way, kept as a control: check, insert, then read the counter, add one and save. Two
 * requests that read the same likes_count both write count + 1, so likes are lost (seed 004).
 */
@Injectable()
export class UnsafeLikesService {
  constructor(
    @InjectRepository(Post) private readonly posts: Repository<Post>,
    @InjectRepository(Like) private readonly likes: Repository<Like>,
  ) {}

  async like(postId: number, userId: string): Promise<{ created: boolean; likesCount: number }> {
    const post = await this.posts.findOneByOrFail({ id: postId });
    if (await this.likes.existsBy({ postId, userId })) return { created: false, likesCount: post.likesCount };
    await this.likes.insert({ postId, userId });
    post.likesCount += 1;
    await this.posts.save(post);
    return { created: true, likesCount: post.likesCount };
  }
}
