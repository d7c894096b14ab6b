// @ts-check
/** Formatting of numbers, times, ids and JSON for display (plain strings). */

/**
 * "42%", "33.3%": never rounds up to 100 before it is 100.
 * @param {number | null | undefined} percent
 */
export function percentText(percent) {
  const value = clampPercent(percent);
  const shown = Math.floor(value * 10) / 10;
  return `${Number.isInteger(shown) ? shown : shown.toFixed(1)}%`;
}

/** @param {number | null | undefined} percent */
export function clampPercent(percent) {
  const value = Number(percent);
  if (!Number.isFinite(value)) return 0;
  return Math.min(100, Math.max(0, value));
}

/**
 * A short local time: "14:03:22" today, "24 Nov 14:03" before.
 * @param {string | null | undefined} iso
 */
export function timeText(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  return sameDay
    ? date.toLocaleTimeString(undefined, { hour12: false })
    : date.toLocaleString(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hour12: false });
}

/**
 * A time with milliseconds, for the event timeline.
 * @param {string | null | undefined} iso
 */
export function preciseTimeText(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const ms = String(date.getMilliseconds()).padStart(3, '0');
  return `${date.toLocaleTimeString(undefined, { hour12: false })}.${ms}`;
}

/**
 * "850 ms", "12.4 s", "3 min 04 s", "2 h 05 min".
 * @param {number} ms
 */
export function durationText(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/**
 * The elapsed time of an operation so far (or in all, once finished).
 * @param {{created_at?: string, started_at?: string | null, finished_at?: string | null}} op
 */
export function elapsedText(op) {
  const start = Date.parse(op.started_at ?? op.created_at ?? '');
  if (Number.isNaN(start)) return '—';
  const end = op.finished_at ? Date.parse(op.finished_at) : Date.now();
  return durationText(end - start);
}

/**
 * The distinctive end of a UUIDv7 (its start is a timestamp shared by
 * operations created in the same millisecond).
 * @param {string} id
 */
export function shortId(id) {
  return id.length > 12 ? `…${id.slice(-8)}` : id;
}

const JSON_LIMIT = 200_000;

/**
 * Pretty JSON, cut at 200 kB so a huge result cannot stall the page.
 * @param {unknown} value
 */
export function jsonText(value) {
  let text;
  try {
    text = JSON.stringify(value, null, 2) ?? 'null';
  } catch {
    text = String(value);
  }
  return text.length > JSON_LIMIT ? `${text.slice(0, JSON_LIMIT)}\n… (${text.length - JSON_LIMIT} more characters)` : text;
}

/**
 * One line of JSON, cut at `limit` characters.
 * @param {unknown} value
 * @param {number} [limit]
 */
export function jsonLine(value, limit = 160) {
  let text;
  try {
    text = JSON.stringify(value) ?? 'null';
  } catch {
    text = String(value);
  }
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}
