import { describe, expect, it } from '@jest/globals';
import { SchedulerRegistry } from '@nestjs/schedule';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { useSampleReplicas } from './support/sample-app.js';

describe('sample: nightly stats job on two replicas', () => {
  // Two apps on one database stand for two replicas.
  const replicas = useSampleReplicas(['a', 'b'], { poolSize: 10 });
  const runs = async (tick: string): Promise<number> =>
    (await replicas[0]!.app.get(DataSource).query('SELECT count(*)::int AS n FROM stats_runs WHERE tick = $1', [tick]))[0].n;
  /** Fires the job on every replica at the same instant, like one cron tick. */
  const tick = (route: string, name: string) => {
    const at = Date.now() + 200;
    return Promise.all(replicas.map((replica) => request(replica.url).post(`/stats/${route}`).send({ tick: name, at }).expect(200)));
  };

  it('is scheduled with @Cron (the lock decorator kept the cron metadata)', () => {
    expect(replicas[0]!.app.get(SchedulerRegistry).getCronJob('nightly-stats')).toBeDefined();
  });

  it('runs once per tick across replicas: one ran, the other skipped', async () => {
    for (const name of ['t1', 't2', 't3']) {
      const results = await tick('runs', name);
      expect(results.map((r) => r.body.ran).sort()).toEqual([false, true]);
      expect(await runs(name)).toBe(1);
    }
  });

  it('lists the runs of a tick with the replica that ran it', async () => {
    await tick('runs', 'listed');
    const listed = (await request(replicas[1]!.url).get('/stats/runs?tick=listed').expect(200)).body;
    expect(listed).toHaveLength(1);
    expect(['a', 'b']).toContain(listed[0].replica);
    expect(listed[0]).toMatchObject({ tick: 'listed', mode: 'locked' });
  });

  it('a tick after the previous run finished runs again (skip is per moment, not per day)', async () => {
    await tick('runs', 'again');
    await tick('runs', 'again');
    expect(await runs('again')).toBe(2);
  });

  it('400 for a trigger too far in the future', async () => {
    await request(replicas[0]!.url).post('/stats/runs').send({ tick: 'x', at: Date.now() + 60_000 }).expect(400);
  });

  it('control: without the lock, every replica runs the tick', async () => {
    const results = await tick('runs/unsafe', 'naive');
    expect(results.map((r) => r.body.ran)).toEqual([true, true]);
    expect(await runs('naive')).toBe(2);
  });
});
