import type { SettingsContext, TransactionSettings } from 'nestjs-txlock';

/**
 * The notes table with row-level security, as a migration would create it (run by its owner, not by the app's role).
 * ENABLE turns the policy on for every role but the table's owner and superusers; FORCE extends it to the owner. The
 * app must still connect as a role that is neither a superuser nor has BYPASSRLS (`appRole` gets the grants it needs).
 * `current_setting('app.tenant_id', true)` is NULL when the setting is missing: then no row matches, and nothing can
 * be written (fail closed).
 */
export function notesRlsStatements(appRole: string): string[] {
  if (!/^[a-z_][a-z0-9_]*$/.test(appRole)) throw new Error(`not a plain role name: ${appRole}`);
  return [
    `CREATE TABLE notes (
      id serial PRIMARY KEY,
      tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'),
      slug text NOT NULL,
      body text NOT NULL,
      CONSTRAINT notes_tenant_slug_key UNIQUE (tenant_id, slug)
    )`,
    `ALTER TABLE notes ENABLE ROW LEVEL SECURITY`,
    `ALTER TABLE notes FORCE ROW LEVEL SECURITY`,
    `CREATE POLICY notes_of_tenant ON notes
      USING (tenant_id = current_setting('app.tenant_id', true))
      WITH CHECK (tenant_id = current_setting('app.tenant_id', true))`,
    `GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO ${appRole}`,
    `GRANT USAGE ON SEQUENCE notes_id_seq TO ${appRole}`,
  ];
}

/**
 * The module option `settings`: every transaction (and the library's own statements outside one) of a request sets
 * `app.tenant_id` to the request's tenant. The sample reads a header to stay short; a real app takes the tenant from
 * what its auth guard put on the request (`request.user.tenantId`), never from something the client chooses.
 * No tenant, no setting: the policy then shows nothing.
 */
export function tenantSettings({ request }: SettingsContext): TransactionSettings | undefined {
  const tenant: unknown = request?.headers?.['x-tenant-id'];
  return typeof tenant === 'string' && tenant !== '' ? { 'app.tenant_id': tenant } : undefined;
}
