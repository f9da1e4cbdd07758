import net from 'node:net';

/** Options of TcpProxy.start(). */
export interface TcpProxyOptions {
  /**
   * Give each client a backend key of the proxy's own (the BackendKeyData message rewritten) while still passing
   * every statement to the backend the connection was opened on: what a client sees of PgBouncer, pgcat or
   * Supavisor, which answer with keys of their own. Unencrypted connections only.
   */
  ownBackendKey?: boolean;
}

/** The process id a proxy started with `ownBackendKey` gives every client: above Linux's largest pid (2^22). */
export const PROXY_BACKEND_PID = 0x7fff_fff0;

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
  private frozen = false;
  // While frozen: the ends of links that closed (their other end must not learn it), and connections accepted meanwhile.
  private readonly closedWhileFrozen = new Set<() => void>();
  private readonly acceptedWhileFrozen = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly url: string,
  ) {}

  /** Starts a proxy to the server of `databaseUrl`; its `url` is the same URL through the proxy. */
  static async start(databaseUrl: string, options: TcpProxyOptions = {}): Promise<TcpProxy> {
    const target = new URL(databaseUrl);
    let proxy!: TcpProxy;
    const server = net.createServer((client) => proxy.accept(client, target, options.ownBackendKey === true));
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

  /**
   * A half-open path, as after a partition or a dead node: from now on nothing is forwarded in either direction (bytes
   * are dropped, as the network drops packets), and neither socket is closed; a side that closes is not told to the
   * other. New connections are accepted and get no answer. No FIN, no RST: only timeouts can tell.
   */
  freeze(): void {
    this.frozen = true;
  }

  /** Ends freeze(): forwarding resumes; links one side closed meanwhile are closed, connections accepted meanwhile dropped. */
  thaw(): void {
    this.frozen = false;
    for (const close of this.closedWhileFrozen) close();
    this.closedWhileFrozen.clear();
    for (const socket of this.acceptedWhileFrozen) socket.destroy();
    this.acceptedWhileFrozen.clear();
  }

  /** The next COMMIT reaches the server, which commits, but its reply never comes back: the connection dies. */
  loseNextCommitReply(): void {
    this.loseCommitReply = true;
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket, target: URL, ownBackendKey: boolean): void {
    if (this.down) {
      client.destroy();
      return;
    }
    if (this.frozen) {
      // Accepted, never answered: the client's connect waits for a server that does not reply.
      this.acceptedWhileFrozen.add(client);
      client.on('error', () => client.destroy());
      return;
    }
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    this.sockets.add(client).add(upstream);
    const keys = ownBackendKey ? new BackendKeyRewriter() : undefined;
    let commitSent = false;
    client.on('data', (received: Buffer) => {
      if (this.frozen) return;
      const chunk = keys ? keys.fromClient(received, (answer) => client.write(answer)) : received;
      // A simple-protocol Query message ('Q') carrying COMMIT.
      if (this.loseCommitReply && chunk[0] === 0x51 && chunk.includes('COMMIT')) {
        this.loseCommitReply = false;
        commitSent = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (this.frozen) return;
      if (commitSent) {
        client.destroy();
        upstream.end();
        return;
      }
      client.write(keys ? keys.fromServer(chunk) : chunk);
    });
    const close = () => {
      if (this.frozen) {
        this.closedWhileFrozen.add(close);
        return;
      }
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  }
}

// Protocol codes of the requests a client may send before its StartupMessage to ask for encryption.
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;

/**
 * Plays a pooler at the start of one connection: refuses encryption itself ('N', as a pooler without TLS does) and
 * rewrites the process id of the server's BackendKeyData message ('K'), passing everything else on.
 */
class BackendKeyRewriter {
  private startupSeen = false;
  private buffered = Buffer.alloc(0);
  private done = false;

  /** What of the client's `chunk` goes on to the server; an encryption request is answered here with `refuse`. */
  fromClient(chunk: Buffer, refuse: (answer: Buffer) => void): Buffer {
    if (this.startupSeen || chunk.length !== 8) {
      this.startupSeen = true;
      return chunk;
    }
    const code = chunk.readInt32BE(4);
    if (chunk.readInt32BE(0) !== 8 || (code !== SSL_REQUEST && code !== GSSENC_REQUEST)) return chunk;
    refuse(Buffer.from('N'));
    return Buffer.alloc(0);
  }

  fromServer(chunk: Buffer): Buffer {
    if (this.done) return chunk;
    let rest = Buffer.concat([this.buffered, chunk]);
    const out: Buffer[] = [];
    while (rest.length >= 5 && rest.length >= 1 + rest.readInt32BE(1)) {
      const message = Buffer.from(rest.subarray(0, 1 + rest.readInt32BE(1)));
      rest = rest.subarray(message.length);
      out.push(message);
      if (message[0] === 0x4b) {
        message.writeInt32BE(PROXY_BACKEND_PID, 5);
        this.done = true;
        out.push(rest);
        rest = Buffer.alloc(0);
        break;
      }
    }
    this.buffered = rest;
    return Buffer.concat(out);
  }
}
