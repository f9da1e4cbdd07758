/** Today's date (UTC) as `YYYY-MM-DD`: the nightly job's tick and the naive quota's day. */
export function today(): string {
  return new Date().toISOString().slice(0, 10);
}
