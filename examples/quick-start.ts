import { BadRequestException, Body, Controller, Get, Injectable, Module, Param, ParseIntPipe, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { InjectRepository, TypeOrmModule } from '@nestjs/typeorm';
import { Column, Entity, PrimaryGeneratedColumn, Repository } from 'typeorm';
import { AdvisoryLock, Transactional, TxLockModule } from 'nestjs-txlock';

@Entity()
export class Account {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'int', default: 0 })
  balance!: number;
}

@Injectable()
export class Bank {
  constructor(@InjectRepository(Account) private readonly accounts: Repository<Account>) {}

  // Both accounts are locked, always in the same order (so two opposite transfers never deadlock), in the
  // transaction the decorators open; the plain repository joins it. The check and the writes cannot race.
  @AdvisoryLock({ keys: (from: number, to: number) => [['account', from], ['account', to]] })
  @Transactional()
  async transfer(from: number, to: number, amount: number): Promise<void> {
    const source = await this.accounts.findOneByOrFail({ id: from });
    if (source.balance < amount) throw new BadRequestException(`account ${from} has ${source.balance}, not ${amount}`);
    await this.accounts.decrement({ id: from }, 'balance', amount);
    await this.accounts.increment({ id: to }, 'balance', amount);
  }
}

@Controller('accounts')
export class AccountsController {
  constructor(
    private readonly bank: Bank,
    @InjectRepository(Account) private readonly accounts: Repository<Account>,
  ) {}

  @Post()
  open(@Body() body: { balance: number }): Promise<Account> {
    return this.accounts.save(this.accounts.create({ balance: body.balance }));
  }

  @Post(':from/transfers')
  transfer(@Param('from', ParseIntPipe) from: number, @Body() body: { to: number; amount: number }): Promise<void> {
    return this.bank.transfer(from, body.to, body.amount);
  }

  @Get(':id')
  show(@Param('id', ParseIntPipe) id: number): Promise<Account> {
    return this.accounts.findOneByOrFail({ id });
  }
}

@Module({
  imports: [
    TypeOrmModule.forRoot({ type: 'postgres', url: process.env.DATABASE_URL, entities: [Account], synchronize: true }),
    TypeOrmModule.forFeature([Account]),
    TxLockModule.forRoot(),
  ],
  controllers: [AccountsController],
  providers: [Bank],
})
export class AppModule {}

export async function bootstrap(): Promise<void> {
  const app = await NestFactory.create(AppModule);
  await app.listen(3000);
}
