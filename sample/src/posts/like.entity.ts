import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, Unique } from 'typeorm';

/**
 * One user's like of one post. The unique constraint is what makes "like" idempotent under concurrency:
 * the database, not the application, guarantees one row per (post, user).
 */
@Entity('likes')
@Unique('likes_post_user_key', ['postId', 'userId'])
export class Like {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ name: 'post_id' })
  postId!: number;

  @Column({ name: 'user_id' })
  userId!: string;

  @CreateDateColumn({ name: 'created_at' })
  createdAt!: Date;
}
