import { SAFE, type Row } from './row.js';

const HEADERS = ['feature', 'path', 'requests', 'expected', 'observed', 'lost or duplicated', 'time'] as const;

/** The demo's result as one plain-text table (fits in a README code block). */
export function renderTable(rows: readonly Row[]): string {
  const cells = rows.map((row) => [
    row.feature,
    row.path,
    String(row.requests),
    row.expected,
    row.observed,
    row.path.startsWith(SAFE) ? `${row.difference}${row.ok ? '' : '  <-- WRONG'}` : row.difference,
    `${Math.round(row.ms)} ms`,
  ]);
  const widths = HEADERS.map((header, column) => Math.max(header.length, ...cells.map((line) => line[column]!.length)));
  const numeric = new Set([2, 6]);
  const format = (line: readonly string[]): string =>
    line
      .map((cell, column) => (numeric.has(column) ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd();
  const separator = widths.map((width) => '-'.repeat(width)).join('  ');
  return [format(HEADERS), separator, ...cells.map(format)].join('\n');
}
