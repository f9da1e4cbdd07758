/** One HTTP request of a scenario. */
export interface DemoRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  body?: unknown;
}

/** The status and parsed JSON body of a response (status 0: the request itself failed). */
export interface DemoResponse {
  status: number;
  body: unknown;
}

/** Requests in flight at once, per scenario: enough to race, few enough to be polite to a laptop. */
const MAX_IN_FLIGHT = 64;

/** Sends the demo's requests to the replicas, round-robin, from this one process to localhost only. */
export class DemoClient {
  constructor(readonly replicas: readonly string[]) {}

  /** One request to replica `index % replicas`. */
  async send(index: number, request: DemoRequest): Promise<DemoResponse> {
    const base = this.replicas[index % this.replicas.length]!;
    try {
      const response = await fetch(base + request.path, {
        method: request.method,
        headers: request.body === undefined ? undefined : { 'content-type': 'application/json' },
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
      });
      const text = await response.text();
      return { status: response.status, body: text ? (JSON.parse(text) as unknown) : undefined };
    } catch (error) {
      return { status: 0, body: String(error) };
    }
  }

  /** One request whose success the scenario depends on (set-up): throws on a non-2xx status. */
  async expectOk<T>(request: DemoRequest): Promise<T> {
    const response = await this.send(0, request);
    if (response.status < 200 || response.status >= 300) {
      throw new Error(`${request.method} ${request.path} → ${response.status} ${JSON.stringify(response.body)}`);
    }
    return response.body as T;
  }

  /**
   * `count` requests made by `make(i)`, at most MAX_IN_FLIGHT at a time, spread over the replicas.
   * Returns the responses in index order and the wall time of the whole burst.
   */
  async burst(count: number, make: (index: number) => DemoRequest): Promise<{ responses: DemoResponse[]; ms: number }> {
    const started = performance.now();
    const responses = new Array<DemoResponse>(count);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < count) {
        const index = next++;
        responses[index] = await this.send(index, make(index));
      }
    };
    await Promise.all(Array.from({ length: Math.min(MAX_IN_FLIGHT, count) }, lane));
    return { responses, ms: performance.now() - started };
  }
}

/** How many responses had a 2xx status. */
export function succeeded(responses: readonly DemoResponse[]): number {
  return responses.filter((r) => r.status >= 200 && r.status < 300).length;
}

/** How many responses had `status`. */
export function withStatus(responses: readonly DemoResponse[], status: number): number {
  return responses.filter((r) => r.status === status).length;
}
