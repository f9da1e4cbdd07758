import net from 'node:net';

/**
 * A TCP proxy in front of the test PostgreSQL server, to break connections on purpose: drop every open
 * connection (the server restarting, the network failing), refuse new ones while "down", or let the server
 * run one COMMIT and lose its reply (the outcome the client can never learn). `url` is the database URL
 * through the proxy.
 */
export class TcpProxy {
  private readonly sockets = new Set<net.Socket>();
  private down = false;
  private loseCommitReply = false;

  private constructor(
    private readonly server: net.Server,
    readonly url: string,
  ) {}

  /** Starts a proxy to the server of `databaseUrl`; its `url` is the same URL through the proxy. */
  static async start(databaseUrl: string): Promise<TcpProxy> {
    const target = new URL(databaseUrl);
    let proxy!: TcpProxy;
    const server = net.createServer((client) => proxy.accept(client, target));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = new URL(databaseUrl);
    url.hostname = '127.0.0.1';
    url.port = String((server.address() as net.AddressInfo).port);
    proxy = new TcpProxy(server, url.toString());
    return proxy;
  }

  /** Destroys every open connection at once, as a server crash or a network cut would. */
  dropAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /** While down, new connections are closed at once (a server that is restarting). */
  setDown(down: boolean): void {
    this.down = down;
    if (down) this.dropAll();
  }

  /** The next COMMIT reaches the server, which commits, but its reply never comes back: the connection dies. */
  loseNextCommitReply(): void {
    this.loseCommitReply = true;
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket, target: URL): void {
    if (this.down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    this.sockets.add(client).add(upstream);
    let commitSent = false;
    client.on('data', (chunk) => {
      // A simple-protocol Query message ('Q') carrying COMMIT.
      if (this.loseCommitReply && chunk[0] === 0x51 && chunk.includes('COMMIT')) {
        this.loseCommitReply = false;
        commitSent = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (commitSent) {
        client.destroy();
        upstream.end();
        return;
      }
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  }
}
