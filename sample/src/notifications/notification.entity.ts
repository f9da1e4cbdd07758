import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** "alice liked your post": what the author is told, once per like. */
@Entity('notifications')
export class Notification {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ name: 'post_id' })
  postId!: number;

  /** Who liked the post. */
  @Column({ name: 'user_id' })
  userId!: string;

  /** How it was made: by the outbox's handler, or by a naive afterCommit hook (the demo's control). */
  @Column({ type: 'text' })
  via!: 'outbox' | 'after-commit';

  @CreateDateColumn({ name: 'created_at' })
  createdAt!: Date;
}
