import { Injectable, type OnModuleInit } from '@nestjs/common';
import { TransactionHost } from '../transaction/transaction.host.js';
import { identifyServer } from './identify-server.js';

/**
 * At bootstrap, before any feature runs, identifies the server behind the DataSource (identifyServer: one
 * statement on one pooled connection) and fails with UnsupportedServerError on an engine whose advisory locks do
 * not lock, or on a PostgreSQL older than 13: a lock library must never start on a server where locks are no-ops.
 * What it saw of the path to the server decides whether the library's statements are prepared (PreparedStatements).
 */
@Injectable()
export class ServerCheck implements OnModuleInit {
  constructor(private readonly txHost: TransactionHost) {}

  async onModuleInit(): Promise<void> {
    this.txHost.serverIdentified(await identifyServer(this.txHost.dataSource));
  }
}
