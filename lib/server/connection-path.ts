// One answer per physical connection: neither side of the comparison changes while it lives.
const answers = new WeakMap<object, boolean>();

/**
 * True when `client` talks straight to the PostgreSQL backend it was opened on. Every new connection is told its
 * backend's process id (BackendKeyData, pg's `client.processID`); a pooler that hands statements to server
 * connections of its own (PgBouncer in any pool mode, pgcat, Odyssey, Supavisor) gives the client a key of its own
 * instead, which is not the pid `pg_backend_pid()` reports. So the two agree on a direct connection (and through
 * TCP-level proxies, which pass the key on untouched) and, barring a one-in-four-billion coincidence, never behind
 * such a pooler, whichever server connection it happens to pick. `backendPid` asks the server, once per client.
 */
export async function isDirectConnection(client: object, backendPid: () => Promise<number>): Promise<boolean> {
  const known = answers.get(client);
  if (known !== undefined) return known;
  // pg keeps BackendKeyData's process id as `processID` (not in @types/pg).
  const { processID } = client as { processID?: unknown };
  const direct = typeof processID === 'number' && processID === (await backendPid());
  answers.set(client, direct);
  return direct;
}
