import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { AtomicService, CounterService, OutboxService, TransactionHost, Transactional } from 'nestjs-txlock';
import type { Repository } from 'typeorm';
import { NotificationsService, POST_LIKED, type PostLiked } from '../notifications/notifications.service.js';
import { Like } from './like.entity.js';
import { Post } from './post.entity.js';
import { PostsService } from './posts.service.js';

/** The result of a like or unlike: whether it changed anything, and the counter after it. */
export interface LikeResult {
  changed: boolean;
  likesCount: number;
}

/**
 * Likes, exact under any concurrency, on one replica or many. The like row and the counter change in
 * one transaction, so likes_count always equals the rows, even when a request fails halfway. A new like
 * publishes "post liked" on the outbox in that transaction too: the author's notification follows its commit.
 */
@Injectable()
export class LikesService {
  constructor(
    private readonly posts: PostsService,
    private readonly atomic: AtomicService,
    private readonly counters: CounterService,
    private readonly outbox: OutboxService,
    private readonly tx: TransactionHost,
    private readonly notifications: NotificationsService,
    @InjectRepository(Like) private readonly likes: Repository<Like>,
  ) {}

  /** Idempotent: only the request that created the like row moves the counter and notifies the author. */
  @Transactional()
  async like(postId: number, userId: string): Promise<LikeResult> {
    const result = await this.record(postId, userId);
    // Committed with the like, or rolled back with it; delivered after the commit by a relay of any replica.
    if (result.changed) await this.outbox.publish(POST_LIKED, { postId, userId } satisfies PostLiked, { key: `post:${postId}` });
    return result;
  }

  /**
   * The same like, with the notification sent the naive way (the demo's control): an afterCommit hook, kept in this
   * process's memory, so a process killed between the COMMIT and the hook loses it.
   */
  @Transactional()
  async likeNotifyingAfterCommit(postId: number, userId: string): Promise<LikeResult> {
    const result = await this.record(postId, userId);
    if (result.changed) this.tx.afterCommit(() => this.notifications.sendAfterCommit({ postId, userId }));
    return result;
  }

  private async record(postId: number, userId: string): Promise<LikeResult> {
    await this.posts.get(postId);
    const { created } = await this.atomic.getOrCreate(Like, { postId, userId });
    return { changed: created, likesCount: created ? await this.addToCount(postId, 1) : (await this.posts.get(postId)).likesCount };
  }

  /** Idempotent: only the request whose DELETE removed the row moves the counter. */
  @Transactional()
  async unlike(postId: number, userId: string): Promise<LikeResult> {
    await this.posts.get(postId);
    const { affected } = await this.likes.delete({ postId, userId });
    const changed = (affected ?? 0) > 0;
    return { changed, likesCount: changed ? await this.addToCount(postId, -1) : (await this.posts.get(postId)).likesCount };
  }

  /** `likes_count = likes_count + by` in the database (never below 0), returning the new count. */
  private async addToCount(postId: number, by: number): Promise<number> {
    const [count] = await this.counters.incrementColumn(Post, { id: postId }, 'likesCount', by, { min: 0 });
    // No row back: min: 0 refused it, so the count was (and stays) 0.
    return count ?? 0;
  }
}
