import { beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Injectable } from '@nestjs/common';
import request from 'supertest';
import { CounterService, InvalidOptionError, InvalidSettingError, Transactional, TransactionHost, TxLockCounter } from '../../lib/index.js';
import { RoundTripLog } from '../support/round-trips.js';
import { useTestApp } from '../support/test-app.js';

const TENANT = `current_setting('app.tenant_id', true) AS tenant`;

@Injectable()
class Tenants {
  constructor(readonly tx: TransactionHost) {}

  async tenant(): Promise<string | null> {
    const [row] = await this.tx.manager.query(`SELECT ${TENANT}`);
    return row.tenant;
  }

  @Transactional({ settings: { 'app.tenant_id': 'constant' } })
  constant(): Promise<string | null> {
    return this.tenant();
  }

  @Transactional({ settings: (tenantId: string) => ({ 'app.tenant_id': tenantId, 'app.user_id': 7 }) })
  async ofArguments(tenantId: string): Promise<{ tenant: string | null; user: string }> {
    const [row] = await this.tx.manager.query(`SELECT ${TENANT}, current_setting('app.user_id') AS user`);
    return row;
  }

  @Transactional()
  fromModule(): Promise<string | null> {
    return this.tenant();
  }

  @Transactional({ settings: (tenantId: string) => ({ 'app.tenant_id': tenantId }) })
  async joinAs(outer: string, inner: string): Promise<string | null> {
    return this.joined(inner);
  }

  @Transactional({ settings: (tenantId: string) => ({ 'app.tenant_id': tenantId }) })
  joined(tenantId: string): Promise<string | null> {
    return this.tenant();
  }
}

@Controller('tenant')
class TenantController {
  constructor(
    private readonly tenants: Tenants,
    private readonly counters: CounterService,
  ) {}

  @Get()
  async current(): Promise<{ tenant: string | null }> {
    return { tenant: await this.tenants.fromModule() };
  }

  @Get('count')
  async count(): Promise<{ value: string }> {
    return { value: String(await this.counters.increment('visits')) };
  }
}

describe('tenant settings in the transaction (set_config(name, value, true) in the opening batch)', () => {
  const testApp = useTestApp({
    poolSize: 2,
    http: true,
    entities: [TxLockCounter],
    providers: [Tenants],
    controllers: [TenantController],
    txlock: {
      // The request's tenant, as an app would take it from its auth guard's request.user.
      settings: ({ request }) => {
        const tenant: unknown = request?.headers?.['x-tenant-id'];
        return typeof tenant === 'string' ? { 'app.tenant_id': tenant } : undefined;
      },
    },
  });
  let tenants: Tenants;
  let tx: TransactionHost;

  beforeAll(() => {
    tenants = testApp.get(Tenants);
    tx = testApp.get(TransactionHost);
  });

  it('sets them for the transaction only: inside it the value, after it nothing on the same pooled connections', async () => {
    expect(await tenants.constant()).toBe('constant');
    // Both pooled connections, after their transactions ended: the setting did not outlive them.
    const after = await Promise.all([0, 1].map(() => testApp.dataSource.query(`SELECT ${TENANT}, pg_sleep(0.05)`)));
    for (const [row] of after) expect(row.tenant ?? '').toBe('');
  });

  it('costs no round trip, and no value ever becomes SQL text: quotes, backslashes, $1, newlines and emoji come back exactly', async () => {
    const plain = RoundTripLog.attach(testApp.dataSource);
    await tx.run(() => tenants.tenant());
    plain.stop();
    const values = ["it's", 'back\\slash', "'); DROP TABLE tx_item; --", '$1 $$ $tag$', 'line\nbreak', 'ünïcødé 🎉', '', '0123'];
    for (const value of values) {
      const log = RoundTripLog.attach(testApp.dataSource);
      expect(await tx.run({ settings: { 'app.tenant_id': value } }, () => tenants.tenant())).toBe(value);
      log.stop();
      expect(log.count).toBe(plain.count);
      if (value.length > 4) expect(log.sent.join('\n')).not.toContain(value);
      expect(log.sent[0]).toMatch(/^BEGIN;\nSELECT set_config\('app\.tenant_id', /);
    }
  });

  it("@Transactional's settings may be a function of the method's arguments; numbers are sent as text", async () => {
    expect(await tenants.ofArguments('t-42')).toEqual({ tenant: 't-42', user: '7' });
  });

  it('derives them per call from the request (module option settings): concurrent requests of two tenants on 2 pooled connections each see their own', async () => {
    const server = testApp.app.getHttpServer();
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const tenant = i % 2 === 0 ? 'tenant-a' : 'tenant-b';
        return request(server).get('/tenant').set('x-tenant-id', tenant).then((response) => ({ tenant, seen: response.body.tenant }));
      }),
    );
    for (const { tenant, seen } of answers) expect(seen).toBe(tenant);
    // No request, no settings (a job, a consumer): nothing is set.
    expect((await tenants.fromModule()) ?? '').toBe('');
  });

  it("puts them on the library's own statements outside transactions too (a counter), in a transaction of their own", async () => {
    const log = RoundTripLog.attach(testApp.dataSource);
    const response = await request(testApp.app.getHttpServer()).get('/tenant/count').set('x-tenant-id', 'tenant-a');
    log.stop();
    expect(response.status).toBe(200);
    expect(log.sent[0]).toMatch(/^BEGIN ISOLATION LEVEL READ COMMITTED;\nSELECT set_config\('app\.tenant_id', convert_from/);
    expect(log.sent.at(-1)).toBe('COMMIT');
  });

  it('refuses a call that joins a transaction with other values (never silently runs with the outer ones); the same values join', async () => {
    await expect(tenants.joinAs('tenant-a', 'tenant-b')).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(tenants.joinAs('tenant-a', 'tenant-a')).resolves.toBe('tenant-a');
  });

  it('refuses names that are not custom settings, and values that are not text, before anything is sent', async () => {
    const log = RoundTripLog.attach(testApp.dataSource);
    for (const name of ['search_path', 'role', 'app', 'app.tenant-id', "app.x'; SELECT 1; --", 'app.', '.x', 'a'.repeat(40) + '.' + 'b'.repeat(40)]) {
      await expect(tx.run({ settings: { [name]: 'x' } }, () => tenants.tenant())).rejects.toBeInstanceOf(InvalidSettingError);
    }
    for (const value of [null, undefined, { id: 1 }, ['a'], Number.NaN, 'nul\u0000']) {
      await expect(tx.run({ settings: { 'app.tenant_id': value as never } }, () => tenants.tenant())).rejects.toBeInstanceOf(InvalidOptionError);
    }
    log.stop();
    expect(log.count).toBe(0);
    const error = await tx.run({ settings: { search_path: 'x' } }, () => undefined).catch((failure: unknown) => failure);
    expect((error as Error).message).toMatch(/prefix\.name.*app\.tenant_id/);
    // At decoration time, a constant that cannot be right fails when the class is defined.
    expect(() => Transactional({ settings: { statement_timeout: '1' } })).toThrow(InvalidSettingError);
  });
});
