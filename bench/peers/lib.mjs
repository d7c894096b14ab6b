// Helpers shared by queue-bench.mjs and stack/server.mjs.
import { parseArgs } from 'node:util';

/** Wall-clock milliseconds with sub-millisecond precision (comparable across processes on one host). */
export const wallMs = () => performance.timeOrigin + performance.now();

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const round = (x, digits = 2) =>
  x == null || Number.isNaN(x) ? null : Math.round(x * 10 ** digits) / 10 ** digits;

/** Nearest-rank percentiles of latencies in ms (the same definition as longrun-bench). */
export function summary(values) {
  if (!values.length) return { n: 0 };
  const sorted = Float64Array.from(values).sort();
  const rank = (q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return {
    n: sorted.length, p50: round(rank(0.5), 3), p95: round(rank(0.95), 3), p99: round(rank(0.99), 3),
    max: round(sorted[sorted.length - 1], 3), mean: round(mean, 3),
  };
}

/** `--name value` options with defaults; every value is returned as a string. */
export function options(defaults) {
  const spec = Object.fromEntries(Object.keys(defaults).map((k) => [k, { type: 'string', default: String(defaults[k]) }]));
  return parseArgs({ options: spec, allowPositionals: true }).values;
}

/** Refuses anything but a loopback address: benchmarks never leave this machine. */
export function loopbackOnly(url) {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  if (!['127.0.0.1', 'localhost', '::1'].includes(host)) throw new Error(`refusing non-loopback address ${url}`);
  return url;
}

/** Resolves true once `condition()` holds, false at the deadline (checked every 2 ms). */
export async function until(condition, deadlineMs) {
  while (!condition()) {
    if (wallMs() > deadlineMs) return false;
    await sleep(2);
  }
  return true;
}

/** `INFO commandstats` as {command: calls}. */
export async function commandCalls(redis) {
  const text = await redis.info('commandstats');
  const calls = {};
  for (const line of text.split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m) calls[m[1]] = Number(m[2]);
  }
  return calls;
}

/** Calls per command between two commandCalls() snapshots, without the measuring INFO itself. */
export function callsBetween(before, after) {
  const delta = {};
  for (const [cmd, n] of Object.entries(after)) {
    const d = n - (before[cmd] || 0);
    if (d > 0 && cmd !== 'info') delta[cmd] = d;
  }
  return delta;
}

export const sum = (obj) => Object.values(obj).reduce((a, b) => a + b, 0);

/** `INFO memory` used_memory in bytes. */
export async function usedMemory(redis) {
  const m = /used_memory:(\d+)/.exec(await redis.info('memory'));
  return m ? Number(m[1]) : null;
}
