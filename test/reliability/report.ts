/** What a fault test observed: operations tried, succeeded, failed with an error, and lost (must be 0). */
export interface FaultReport {
  tried: number;
  succeeded: number;
  failed: number;
  lost: number;
}

/** Prints one line per fault scenario, so a CI log shows the figures the reliability suite measured. */
export function reportFaults(scenario: string, report: FaultReport): void {
  process.stdout.write(
    `[reliability] ${scenario}: tried ${report.tried}, succeeded ${report.succeeded}, failed with error ${report.failed}, lost ${report.lost}\n`,
  );
}
