import { beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { AdvisoryLock, ScheduledLock, SingleFlight, Transactional, TransactionHost } from '../../lib/index.js';
import { useTestApp } from '../support/test-app.js';

const ROLE = Symbol('role');

/**
 * A decorator of the kind other libraries write (nestjs-cls's "should maintain property" test): it marks the
 * method function itself with a string property, a symbol property and a read-only, non-enumerable one.
 */
function Marked(role: string): MethodDecorator {
  return (_target, _key, descriptor) => {
    const method = descriptor.value as unknown as Record<string | symbol, unknown>;
    method.marker = role;
    method[ROLE] = role;
    Object.defineProperty(method, 'hidden', { value: `${role}-hidden`, enumerable: false, writable: false });
  };
}

// Decorators apply bottom-up: @Marked runs first, then ours wrap the method it marked.
@Injectable()
class MarkedMethods {
  constructor(private readonly tx: TransactionHost) {}

  @Transactional()
  @Marked('transactional')
  async transactional(): Promise<boolean> {
    return this.tx.isActive;
  }

  @AdvisoryLock({ key: 'marked' })
  @Marked('advisory')
  async advisory(): Promise<boolean> {
    return this.tx.isActive;
  }

  @SingleFlight({ ttlMs: 60_000 })
  @Marked('single-flight')
  async singleFlight(): Promise<string> {
    return 'computed';
  }

  @ScheduledLock('marked', { atMostForMs: 60_000 })
  @Marked('scheduled')
  async scheduled(): Promise<string> {
    return 'ran';
  }

  @Transactional()
  @AdvisoryLock({ key: 'stacked' })
  @Marked('stacked')
  async stacked(): Promise<boolean> {
    return this.tx.isActive;
  }
}

describe('method decorators keep what earlier decorators put on the method function', () => {
  const testApp = useTestApp({ providers: [MarkedMethods], txlock: { leases: { autoCreate: true }, singleFlight: { autoCreate: true } } });
  let service: MarkedMethods;

  beforeAll(() => {
    service = testApp.get(MarkedMethods);
  });

  const properties = (method: unknown) => {
    const fn = method as Record<string | symbol, unknown> & { name: string };
    return { name: fn.name, marker: fn.marker, symbol: fn[ROLE], hidden: fn.hidden, hiddenEnumerable: Object.getOwnPropertyDescriptor(fn, 'hidden')?.enumerable };
  };
  const marked = (name: string, role: string) => ({ name, marker: role, symbol: role, hidden: `${role}-hidden`, hiddenEnumerable: false });

  it('keeps string, symbol and non-enumerable properties through @Transactional, @AdvisoryLock, @SingleFlight, @ScheduledLock', () => {
    expect({
      transactional: properties(service.transactional),
      advisory: properties(service.advisory),
      singleFlight: properties(service.singleFlight),
      scheduled: properties(service.scheduled),
      stacked: properties(service.stacked),
    }).toEqual({
      transactional: marked('transactional', 'transactional'),
      advisory: marked('advisory', 'advisory'),
      singleFlight: marked('singleFlight', 'single-flight'),
      scheduled: marked('scheduled', 'scheduled'),
      stacked: marked('stacked', 'stacked'),
    });
  });

  it('the wrapped methods still do their job on the database', async () => {
    expect(await service.transactional()).toBe(true);
    expect(await service.advisory()).toBe(true);
    expect(await service.singleFlight()).toBe('computed');
    expect(await service.scheduled()).toBe('ran');
    expect(await service.stacked()).toBe(true);
    const [{ n }] = await testApp.dataSource.query(`SELECT count(*)::int AS n FROM txlock_leases WHERE name = 'marked'`);
    expect(n).toBe(1);
  });
});
