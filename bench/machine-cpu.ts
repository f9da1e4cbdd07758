import { readFile } from 'node:fs/promises';
import pg from 'pg';
import type { Relay } from './relay.js';

/** CPU time counted from the start of a round. */
export interface CpuMark {
  machine: { busyUs: number; totalUs: number } | undefined;
  db: Map<number, number> | undefined;
  relayUs: number | undefined;
}

/** What the machine's CPUs did during a round, µs. */
export interface CpuSpent {
  /** CPU time of the database server's processes (this database's backends and the background processes). */
  dbUs?: number;
  /** CPU time used by every process on the machine, and the time all cores together had. */
  machineBusyUs?: number;
  machineTotalUs?: number;
  /** CPU time of the --rtt relay process. */
  relayUs?: number;
}

// /proc/stat counts in USER_HZ ticks, 100 per second on Linux.
const US_PER_TICK = 10_000;

/**
 * Reads, around each round, how much CPU the machine and the database server used (Linux /proc; the server
 * only when it runs on this machine). Then "CPU-bound" is a number: Node's share, the server's share, and
 * what other processes took from the same cores.
 */
export class MachineCpu {
  private constructor(
    private readonly client: pg.Client | undefined,
    private readonly relay?: Relay,
  ) {}

  /** `url` names the bench database; its backends are found by pid in pg_stat_activity. `relay`: the --rtt relay. */
  static async open(url: string, relay?: Relay): Promise<MachineCpu> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    // The pid is only ours to read when it is a postgres process on this machine.
    const comm = await readFile(`/proc/${rows[0]!.pid}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === 'postgres') return new MachineCpu(client, relay);
    await client.end();
    return new MachineCpu(undefined, relay);
  }

  async mark(): Promise<CpuMark> {
    return { machine: await machineTicks(), db: this.client ? await this.dbProcesses() : undefined, relayUs: await this.relay?.cpuUs() };
  }

  async since(mark: CpuMark): Promise<CpuSpent> {
    const now = await this.mark();
    const spent: CpuSpent = {};
    if (mark.machine && now.machine) {
      spent.machineBusyUs = now.machine.busyUs - mark.machine.busyUs;
      spent.machineTotalUs = now.machine.totalUs - mark.machine.totalUs;
    }
    if (mark.relayUs !== undefined && now.relayUs !== undefined) spent.relayUs = now.relayUs - mark.relayUs;
    if (mark.db && now.db) {
      // A backend that started during the round counts from zero; one that ended is lost (rare: pools stay open).
      spent.dbUs = [...now.db].reduce((sum, [pid, us]) => sum + us - (mark.db!.get(pid) ?? 0), 0);
    }
    return spent;
  }

  async close(): Promise<void> {
    await this.client?.end();
  }

  private async dbProcesses(): Promise<Map<number, number>> {
    const { rows } = await this.client!.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL',
    );
    const times = await Promise.all(rows.map(async ({ pid }) => [pid, await processCpuUs(pid)] as const));
    return new Map(times.filter((entry): entry is readonly [number, number] => entry[1] !== undefined));
  }
}

async function machineTicks(): Promise<CpuMark['machine']> {
  const text = await readFile('/proc/stat', 'utf8').catch(() => undefined);
  const fields = text?.split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number);
  if (!fields || fields.length < 8) return undefined;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields as [number, number, number, number, number, number, number, number];
  const busy = user + nice + system + irq + softirq + steal;
  return { busyUs: busy * US_PER_TICK, totalUs: (busy + idle + iowait) * US_PER_TICK };
}

// schedstat's first field is the time on a CPU in ns; stat's utime + stime (ticks) where schedstat is missing.
async function processCpuUs(pid: number): Promise<number | undefined> {
  const schedstat = await readFile(`/proc/${pid}/schedstat`, 'utf8').catch(() => undefined);
  if (schedstat) return Number(schedstat.split(' ')[0]) / 1000;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * US_PER_TICK;
}
