import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { AdvisoryLock, advisoryLockKey, InvalidLockKeyError, LockService } from '../../lib/index.js';
import { useTestApp } from '../support/test-app.js';

let runs = 0;

@Injectable()
class Jobs {
  @AdvisoryLock()
  async byDefaultKey(_name: string): Promise<string> {
    runs++;
    return 'ran';
  }

  @AdvisoryLock({ key: (name: string) => ['job', name] })
  async byKey(_name: string): Promise<string> {
    runs++;
    return 'ran';
  }
}

/** What a call gave: its value, { lockKey: true, wellFormed } for InvalidLockKeyError, else the error's class. */
async function outcome(call: () => unknown): Promise<unknown> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof InvalidLockKeyError) return { invalidLockKey: true, saysWhy: /well-formed UTF-16/.test(error.message) };
    return (error as Error).constructor.name;
  }
}
const refused = { invalidLockKey: true, saysWhy: true };

describe('lock keys with strings that are not well-formed UTF-16', () => {
  const testApp = useTestApp({ providers: [Jobs] });
  let locks: LockService;
  let jobs: Jobs;
  const work = async () => {
    runs++;
    return 'ran';
  };

  beforeAll(() => {
    locks = testApp.get(LockService);
    jobs = testApp.get(Jobs);
  });
  beforeEach(() => {
    runs = 0;
  });

  it('refuses a lone surrogate in any string part, in every way a lock key is given, and runs nothing', async () => {
    expect({
      withAdvisoryLock: await outcome(() => locks.withAdvisoryLock('\uD800', work)),
      parts: await outcome(() => locks.withAdvisoryLock(['account', '\uDBFF'], work)),
      tryAdvisoryLock: await outcome(() => locks.tryAdvisoryLock('x\uDC00', work)),
      severalKeys: await outcome(() => locks.withAdvisoryLocks(['fine', ['a', '\uDC00\uD800']], work)),
      sessionScope: await outcome(() => locks.withAdvisoryLock('\uD800', work, { scope: 'session' })),
      holders: await outcome(() => locks.holders('\uD800')),
      advisoryLockKey: await outcome(() => advisoryLockKey(['x', '\uD83D'])),
      decoratorConstant: await outcome(() => AdvisoryLock({ key: 'a\uD800' })),
      decoratorKeyFunction: await outcome(() => jobs.byKey('\uDBFF')),
      decoratorDefaultKey: await outcome(() => jobs.byDefaultKey('\uD800')),
    }).toEqual({
      withAdvisoryLock: refused,
      parts: refused,
      tryAdvisoryLock: refused,
      severalKeys: refused,
      sessionScope: refused,
      holders: refused,
      advisoryLockKey: refused,
      decoratorConstant: refused,
      decoratorKeyFunction: refused,
      decoratorDefaultKey: refused,
    });
    expect(runs).toBe(0);
  });

  it('takes well-formed strings, surrogate pairs (emoji) included, each its own lock', async () => {
    expect(advisoryLockKey('\u{1F600}')).not.toBe(advisoryLockKey('\u{1F601}'));
    expect(await locks.withAdvisoryLock(['\u{1F600}', 'é'], work)).toBe('ran');
    expect(await jobs.byDefaultKey('\u{1F600}')).toBe('ran');
    expect(await jobs.byKey('\u{1F601}')).toBe('ran');
    expect(runs).toBe(3);
  });
});
