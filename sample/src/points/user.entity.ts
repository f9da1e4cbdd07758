import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** A user with a points balance (seed 003's `user.points += calculate_points(user)`). */
@Entity('users')
export class User {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

  @Column({ type: 'integer', default: 0 })
  points!: number;
}
