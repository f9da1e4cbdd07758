import { Injectable, NotFoundException } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { Like } from './like.entity.js';
import { Post } from './post.entity.js';

/** What GET /posts/:id shows: the counter column next to the rows it counts, so drift is visible. */
export interface PostView {
  id: number;
  title: string;
  likesCount: number;
  likeRows: number;
}

/** Creating and reading posts; nothing here races. */
@Injectable()
export class PostsService {
  constructor(
    @InjectRepository(Post) private readonly posts: Repository<Post>,
    @InjectRepository(Like) private readonly likes: Repository<Like>,
  ) {}

  create(title: string): Promise<Post> {
    return this.posts.save(this.posts.create({ title }));
  }

  async view(id: number): Promise<PostView> {
    const post = await this.get(id);
    return { ...post, likeRows: await this.likes.countBy({ postId: id }) };
  }

  /** The post, or 404. */
  async get(id: number): Promise<Post> {
    const post = await this.posts.findOneBy({ id });
    if (!post) throw new NotFoundException(`Post ${id} does not exist.`);
    return post;
  }
}
