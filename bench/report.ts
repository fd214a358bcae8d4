/**
 * Turns measured runs into figures (medians, percentiles, ratios) and writes them out: the
 * text table, the JSON record and the SVG chart of the ratios (drawn by hand: no dependencies).
 */

import type { JobResult } from './protocol.js';
import type { Metric } from './scenarios.js';

/** The median of `values` (the mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >>> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The nearest-rank percentile `p` (0..100) of `values`; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

/** One measured run of one side: the results of all its client processes, combined. */
export interface Run {
  /** Wall time from the first start to the last end, in ms. */
  wallMs: number;
  requests: number;
  bytes: number;
  rps: number;
  mbps: number;
  latencies: number[];
  /** CPU time per round trip of the server process and of the client processes, in µs. */
  serverCpuUs: number;
  clientCpuUs: number;
}

/**
 * Combines the results of a side's client processes for one run.
 * @param serverCpuUs - CPU time the server process used during the run.
 */
export function combine(results: readonly JobResult[], serverCpuUs: number): Run {
  const start = Math.min(...results.map((r) => r.start));
  const end = Math.max(...results.map((r) => r.end));
  const wallMs = Math.max(end - start, 1e-3);
  let requests = 0;
  let bytes = 0;
  let clientCpuUs = 0;
  const latencies: number[] = [];
  for (const r of results) {
    requests += r.requests;
    bytes += r.bytes;
    clientCpuUs += r.cpuUs;
    for (const l of r.latencies) latencies.push(l);
  }
  return {
    wallMs,
    requests,
    bytes,
    rps: (requests * 1000) / wallMs,
    mbps: bytes / (wallMs * 1000),
    latencies,
    serverCpuUs: serverCpuUs / requests,
    clientCpuUs: clientCpuUs / requests,
  };
}

/** The figures of one side of one scenario. */
export interface SideFigures {
  /** Which server and which client ran. */
  server: string;
  client: string;
  /** Medians over the measured runs. */
  rps: number;
  mbps: number;
  /** Percentiles of every round trip of every measured run, in ms. */
  p50Ms: number;
  p99Ms: number;
  /** Peak resident set size of the server process and of the largest client process, in MB. */
  serverRssMb: number;
  clientRssMb: number;
  /**
   * CPU time per round trip (medians over runs), in µs: far less disturbed by other load on
   * the machine than the throughput is, so a steadier view of each side's cost.
   */
  serverCpuUs: number;
  clientCpuUs: number;
  /** Each run's figure of the scenario's metric. */
  perRun: string;
}

/** Summarizes a side's runs. */
export function figures(
  runs: readonly Run[],
  metric: Metric,
  server: string,
  client: string,
  serverRss: number,
  clientRss: number,
): SideFigures {
  const latencies = runs.flatMap((r) => r.latencies);
  return {
    server,
    client,
    rps: median(runs.map((r) => r.rps)),
    mbps: median(runs.map((r) => r.mbps)),
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    serverRssMb: serverRss / 1e6,
    clientRssMb: clientRss / 1e6,
    serverCpuUs: median(runs.map((r) => r.serverCpuUs)),
    clientCpuUs: median(runs.map((r) => r.clientCpuUs)),
    perRun: runs.map((r) => format(metric === 'rps' ? r.rps : r.mbps)).join(' '),
  };
}

/**
 * The ratio of a side to the baseline: the median, over runs, of each run's figure divided by
 * the baseline's figure in the same round (the two ran back to back, so they shared the
 * machine's load of that moment).
 */
export function pairedRatio(side: readonly Run[], base: readonly Run[], metric: Metric): number {
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(side.length, base.length); i++) {
    const a = metric === 'rps' ? side[i]!.rps : side[i]!.mbps;
    const b = metric === 'rps' ? base[i]!.rps : base[i]!.mbps;
    ratios.push(a / b);
  }
  return median(ratios);
}

/** One row group of the report. */
export interface RowReport {
  id: string;
  title: string;
  label: string;
  metric: Metric;
  target: number;
  /** Least MB/s end to end, where the issue sets one. */
  minMbps: number | undefined;
  /** Set when the scenario could not be measured. */
  error: string | undefined;
  sides: { name: string; ratio: number; figures: SideFigures }[];
  /** With `--against`: the project / the other checkout, paired by round. */
  projectVsAgainst?: number | undefined;
}

/** A number for the table: 3 significant digits, thousands separated. */
export function format(value: number): string {
  if (!Number.isFinite(value)) return '-';
  if (value >= 100) return Math.round(value).toLocaleString('en-US');
  if (value >= 10) return value.toFixed(1);
  if (value >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

function verdict(row: RowReport, ratio: number, mbps: number): string {
  if (!Number.isFinite(ratio)) return '';
  const ok = ratio >= row.target && (row.minMbps === undefined || mbps >= row.minMbps);
  return ok ? 'met' : 'MISSED';
}

/** The table as text (also valid Markdown). */
export function table(rows: readonly RowReport[]): string {
  const head = [
    'scenario',
    'side',
    'req/s',
    'p50 ms',
    'p99 ms',
    'MB/s',
    'server RSS MB',
    'client RSS MB',
    'server CPU µs',
    'client CPU µs',
    'ratio',
    'target',
  ];
  const lines: string[][] = [];
  const notes: string[] = [];
  for (const row of rows) {
    if (row.error !== undefined) {
      notes.push(`${row.title}: FAILED: ${row.error}`);
      lines.push([row.title, 'FAILED', '-', '-', '-', '-', '-', '-', '-', '-', '-', 'see below']);
      continue;
    }
    row.sides.forEach((side, i) => {
      const f = side.figures;
      const isBase = side.name === 'baseline';
      const target =
        isBase || side.name !== 'project'
          ? ''
          : `>= ${row.target}${row.minMbps ? ` & ${row.minMbps} MB/s` : ''}: ${verdict(row, side.ratio, f.mbps)}`;
      lines.push([
        i === 0 ? row.title : '',
        side.name,
        format(f.rps),
        format(f.p50Ms),
        format(f.p99Ms),
        format(f.mbps),
        format(f.serverRssMb),
        format(f.clientRssMb),
        format(f.serverCpuUs),
        format(f.clientCpuUs),
        isBase ? '1' : format(side.ratio),
        target,
      ]);
    });
  }
  const widths = head.map((h, c) => Math.max(h.length, ...lines.map((l) => l[c]!.length)));
  const numeric = new Set([2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const render = (cells: string[]): string =>
    `| ${cells.map((cell, c) => (numeric.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join(' | ')} |`;
  return [
    render(head),
    `|${widths.map((w, c) => (numeric.has(c) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`,
    ...lines.map(render),
    ...(notes.length > 0 ? ['', ...notes] : []),
  ].join('\n');
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * A horizontal bar chart of each side's ratio to the baseline, with the line at 1.0 (the
 * baseline) and each scenario's target marked.
 */
export function chart(rows: readonly RowReport[], subtitle: string): string {
  const bars: { label: string; ratio: number; target: number | undefined; met: boolean }[] = [];
  for (const row of rows) {
    for (const side of row.sides) {
      if (side.name === 'baseline') continue;
      const project = side.name === 'project';
      const label = project ? row.label : `${row.label} [${side.name}]`;
      const met = verdict(row, side.ratio, side.figures.mbps) === 'met';
      bars.push({ label, ratio: side.ratio, target: project ? row.target : undefined, met });
    }
  }
  const left = 20 + 7 * Math.max(10, ...bars.map((b) => b.label.length));
  const plot = 420;
  const barHeight = 18;
  const gap = 8;
  const top = 72;
  const height = top + bars.length * (barHeight + gap) + 40;
  const width = left + plot + 60;
  const max = Math.max(1.5, ...bars.map((b) => (Number.isFinite(b.ratio) ? b.ratio : 0))) * 1.05;
  const x = (ratio: number): number => left + (Math.max(0, ratio) / max) * plot;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">simple-ipc / plain node:net, same run (higher is better)</text>`,
    `<text x="10" y="38" fill="#555">${escapeXml(subtitle)}</text>`,
    `<text x="10" y="56" fill="#555">red dashes: target; green: met, orange: missed ((c), (d): also 2 GB/s)</text>`,
  ];
  for (let tick = 0; tick <= max; tick += 0.25) {
    const tx = x(tick).toFixed(1);
    out.push(
      `<line x1="${tx}" y1="${top - 6}" x2="${tx}" y2="${height - 30}" stroke="${tick === 1 ? '#000' : '#ddd'}"${tick === 1 ? ' stroke-width="1.5"' : ''}/>`,
      `<text x="${tx}" y="${height - 14}" text-anchor="middle" fill="#555">${tick.toFixed(2)}</text>`,
    );
  }
  bars.forEach((bar, i) => {
    const y = top + i * (barHeight + gap);
    const fill = !Number.isFinite(bar.ratio)
      ? '#999'
      : bar.target === undefined
        ? '#4682b4'
        : bar.met
          ? '#2e8b57'
          : '#d2691e';
    const end = Number.isFinite(bar.ratio) ? x(bar.ratio) : left;
    out.push(
      `<text x="${left - 8}" y="${y + 13}" text-anchor="end">${escapeXml(bar.label)}</text>`,
      `<rect x="${left}" y="${y}" width="${(end - left).toFixed(1)}" height="${barHeight}" fill="${fill}"/>`,
      `<text x="${(end + 4).toFixed(1)}" y="${y + 13}">${Number.isFinite(bar.ratio) ? bar.ratio.toFixed(2) : 'failed'}</text>`,
    );
    if (bar.target !== undefined) {
      const tx = x(bar.target).toFixed(1);
      out.push(
        `<line x1="${tx}" y1="${y - 2}" x2="${tx}" y2="${y + barHeight + 2}" stroke="#c00" stroke-width="2" stroke-dasharray="3,2"/>`,
      );
    }
  });
  out.push('</svg>', '');
  return out.join('\n');
}
