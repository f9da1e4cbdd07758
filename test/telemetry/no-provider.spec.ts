import { beforeAll, describe, expect, it } from '@jest/globals';
import { CounterService, LeaseService, LockService, SingleFlightService, TransactionHost } from '../../lib/index.js';
import { telemetry } from '../../lib/telemetry/telemetry.js';
import { useTestApp } from '../support/test-app.js';

// Its own file, so its own process: no OpenTelemetry provider was ever registered here.
describe('telemetry with @opentelemetry/api installed but no provider registered', () => {
  const testApp = useTestApp({ txlock: { autoCreate: true } });
  let tx: TransactionHost;

  beforeAll(() => {
    tx = testApp.get(TransactionHost);
  });

  it('stays off, and every feature works as without it', async () => {
    expect(telemetry).toBeUndefined();
    expect(await tx.run({ retries: 2 }, async () => (await tx.manager.query('SELECT 1 AS one'))[0].one)).toBe(1);
    expect(await testApp.get(LockService).withAdvisoryLock('plain', async () => 'locked', { label: 'plain', timeoutMs: 1_000 })).toBe('locked');
    expect(await testApp.get(LockService).tryAdvisoryLock('plain', async () => 'tried', { scope: 'session' })).toEqual({ ran: true, value: 'tried' });
    await tx.run(async () => testApp.get(LockService).lockTables('txlock_leases', 'SHARE'));
    expect(await Promise.all([1, 2, 3].map(() => testApp.get(CounterService).increment('plain')))).toEqual(expect.arrayContaining([1, 2, 3]));
    const lease = await testApp.get(LeaseService).acquire('plain', { atMostForMs: 10_000 });
    expect(await testApp.get(LeaseService).extend(lease!, 10_000)).toBe(lease);
    expect(await testApp.get(SingleFlightService).run('plain', () => 7, { ttlMs: 1_000 })).toBe(7);
    expect(telemetry).toBeUndefined();
  });
});
