// What the documentation's fragments assume an app already has: its entities, its services and a few values.
// Only .ci/check-docs.mjs reads this file.
import type { INestApplication } from '@nestjs/common';
import { Module } from '@nestjs/common';
import { Column, DataSource, Entity, EntityManager, PrimaryGeneratedColumn, Repository, Unique } from 'typeorm';
import type { AtomicService, CounterService, Lease, LeaseService, LockService, OutboxService, SingleFlightService, TransactionHost } from 'nestjs-txlock';

@Entity()
export class Order {
  @PrimaryGeneratedColumn() id!: number;
  @Column() sku!: string;
  @Column('int') quantity!: number;
}

@Entity()
export class Product {
  @PrimaryGeneratedColumn() id!: number;
  @Column('int') stock!: number;
}

@Entity()
@Unique(['clientKey'])
export class Session {
  @PrimaryGeneratedColumn() id!: number;
  @Column() clientKey!: string;
  @Column('int') userId!: number;
}

@Entity()
@Unique(['userId', 'name'])
export class Setting {
  @PrimaryGeneratedColumn() id!: number;
  @Column('int') userId!: number;
  @Column() name!: string;
  @Column() value!: string;
}

@Entity()
export class Book {
  @PrimaryGeneratedColumn() id!: number;
  @Column('int') publisherId!: number;
}

@Entity()
@Unique(['name'])
export class Domain {
  @PrimaryGeneratedColumn() id!: number;
  @Column() name!: string;
}

@Entity()
export class Event {
  @PrimaryGeneratedColumn() id!: number;
  @Column() name!: string;
}

export class Mailer {
  confirm(order: Order): Promise<void> {
    return Promise.resolve(void order);
  }
}

export class TooManyRequests extends Error {
  constructor(readonly resetsAt: Date | null) {
    super('too many requests');
  }
}
export class OutOfStock extends Error {}

export declare function buildReport(day: string): Promise<{ day: string; total: number }>;

/** The services a fragment of statements can use by name, as if injected. */
export declare const counters: CounterService;
export declare const atomic: AtomicService;
export declare const locks: LockService;
export declare const leases: LeaseService;
export declare const singleFlight: SingleFlightService;
export declare const tx: TransactionHost;
export declare const dataSource: DataSource;
export declare const app: INestApplication;
export declare const postId: number;
export declare const productId: number;
export declare const userId: number;
export declare const id: number;
export declare const publisherId: number;
export declare const clientKey: string;
export declare const day: string;
export declare const names: string[];
export declare const order: Order;
export declare const manager: EntityManager;
export declare const lease: Lease;
export declare const body: string;
export declare const mainUrl: string;
export declare const analyticsUrl: string;

/** What a class fragment's `this` has, as if injected into its constructor. */
export abstract class ExampleBase {
  protected readonly counters!: CounterService;
  protected readonly atomic!: AtomicService;
  protected readonly locks!: LockService;
  protected readonly leases!: LeaseService;
  protected readonly singleFlight!: SingleFlightService;
  protected readonly tx!: TransactionHost;
  protected readonly dataSource!: DataSource;
  protected readonly orders!: Repository<Order>;
  protected readonly mailer!: Mailer;
  protected readonly outbox!: OutboxService;
  protected buildReport(day: string): Promise<{ day: string; total: number }> {
    return buildReport(day);
  }
}

/** The app's root module, for the test file examples. */
@Module({})
export class AppModule {}
