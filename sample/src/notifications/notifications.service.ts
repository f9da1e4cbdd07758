import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { OnOutboxEvent } from 'nestjs-txlock';
import type { Repository } from 'typeorm';
import { Notification } from './notification.entity.js';

/** The outbox topic a like is published on. */
export const POST_LIKED = 'post.liked';

/** The payload of POST_LIKED. */
export interface PostLiked {
  postId: number;
  userId: string;
}

/** Making a notification takes a while, like the push or mail call it stands for. */
const SEND_MS = Number(process.env.NOTIFY_MS ?? 20);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Notifications of likes, kept in the `notifications` table. */
@Injectable()
export class NotificationsService {
  constructor(@InjectRepository(Notification) private readonly notifications: Repository<Notification>) {}

  /**
   * The outbox's handler: runs after the like's transaction committed, in the relay's delivery transaction, so the
   * notification row commits with the event's "delivered" mark: one per like, even when a replica is killed.
   */
  @OnOutboxEvent(POST_LIKED)
  async onPostLiked({ postId, userId }: PostLiked): Promise<void> {
    await sleep(SEND_MS);
    await this.notifications.insert({ postId, userId, via: 'outbox' });
  }

  /** The naive way, for the demo: called from an afterCommit hook, in memory; a process that dies first never runs it. */
  async sendAfterCommit({ postId, userId }: PostLiked): Promise<void> {
    await sleep(SEND_MS);
    await this.notifications.insert({ postId, userId, via: 'after-commit' });
  }

  /** How many notifications a post has. */
  count(postId: number): Promise<number> {
    return this.notifications.countBy({ postId });
  }
}
