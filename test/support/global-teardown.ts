import type { EmbeddedServer } from "./embedded-postgres.js";

/** Stops the embedded PostgreSQL (if this run started one) and deletes its data directory. */
export default async function globalTeardown(): Promise<void> {
  const server = (globalThis as { txlockEmbedded?: EmbeddedServer }).txlockEmbedded;
  await server?.stop();
}
