import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** A post with a denormalised like counter: the column seed 004's "likes counters drift" is about. */
@Entity('posts')
export class Post {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  /** Must always equal the number of rows in `likes` for this post. */
  @Column({ name: 'likes_count', type: 'integer', default: 0 })
  likesCount!: number;
}
