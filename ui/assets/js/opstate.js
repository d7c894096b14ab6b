// @ts-check
/**
 * An operation's state in the page, kept current from event frames, and the
 * batching of DOM updates to one pass per animation frame.
 *
 * Events change the state at once (cheap); what they change is marked dirty
 * and drawn once per frame, however many events arrived — so a hundred
 * operations reporting progress ten times a second cost one layout per
 * frame, not a thousand.
 */

export const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** @param {string} status */
export function isTerminal(status) {
  return TERMINAL.has(status);
}

/**
 * The operation resource as the api returns it, plus what the page learns
 * from events only (why it was cancelled).
 * @typedef {{
 *   id: string, kind: string, status: string, done: boolean,
 *   progress: {percent: number, message: string | null, data: unknown},
 *   attempt: number, max_attempts: number, parent_id: string | null,
 *   children: {total: number, queued: number, running: number, succeeded: number, failed: number, cancelled: number},
 *   result: unknown, error: {code: string, message: string, retryable?: boolean} | null,
 *   created_at: string, started_at: string | null, finished_at: string | null, updated_at: string,
 *   seq: number, owner: string, cancel_reason?: string | null,
 * }} Operation
 */

/**
 * A minimal operation from its `created` event (live, before any GET).
 * @param {any} frame
 * @param {string} owner
 * @returns {Operation}
 */
export function fromCreatedEvent(frame, owner) {
  return {
    id: String(frame.operation_id),
    kind: String(frame.data?.kind ?? ''),
    status: 'queued',
    done: false,
    progress: { percent: 0, message: null, data: null },
    attempt: 0,
    max_attempts: 0,
    parent_id: frame.data?.parent_id ?? null,
    children: { total: 0, queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 },
    result: null,
    error: null,
    created_at: String(frame.at ?? ''),
    started_at: null,
    finished_at: null,
    updated_at: String(frame.at ?? ''),
    seq: Number(frame.seq) || 1,
    owner,
  };
}

/**
 * Applies an event frame to an operation; false when it is not newer than
 * what the operation already reflects.
 * @param {Operation} op
 * @param {any} frame `{type: "event", operation_id, seq, event, at, data}`
 */
export function applyEvent(op, frame) {
  const seq = Number(frame.seq);
  if (!Number.isFinite(seq) || seq <= op.seq) return false;
  if (op.done) {
    // A terminal state never changes; later seqs cannot exist.
    op.seq = seq;
    return false;
  }
  const data = frame.data && typeof frame.data === 'object' ? frame.data : {};
  op.seq = seq;
  if (frame.at) op.updated_at = frame.at;
  switch (frame.event) {
    case 'started':
      op.status = 'running';
      if (Number.isFinite(data.attempt)) op.attempt = data.attempt;
      op.started_at ??= frame.at ?? null;
      op.progress = { percent: 0, message: op.progress.message, data: op.progress.data };
      break;
    case 'progress':
      if (op.status === 'queued') op.status = 'running';
      op.progress = {
        percent: Number(data.percent) || 0,
        message: typeof data.message === 'string' ? data.message : null,
        data: data.data ?? null,
      };
      if (data.data && typeof data.data === 'object' && data.data.children && typeof data.data.children === 'object') {
        op.children = { ...op.children, ...data.data.children };
      }
      break;
    case 'retrying':
      op.status = 'queued';
      break;
    case 'succeeded':
      finish(op, 'succeeded', frame.at);
      op.result = data.result ?? null;
      break;
    case 'failed':
      finish(op, 'failed', frame.at);
      op.error = data.error ?? null;
      break;
    case 'cancelled':
      finish(op, 'cancelled', frame.at);
      op.cancel_reason = typeof data.reason === 'string' ? data.reason : null;
      break;
    default:
      break;
  }
  return true;
}

/**
 * @param {Operation} op
 * @param {string} status
 * @param {string | undefined} at
 */
function finish(op, status, at) {
  op.status = status;
  op.done = true;
  op.finished_at = at ?? op.finished_at;
}

/**
 * Takes a freshly read resource when it is at least as new as the state;
 * keeps what only events told (the cancel reason).
 * @param {Operation} op
 * @param {Operation} resource
 */
export function mergeResource(op, resource) {
  if (resource.seq < op.seq) return false;
  const reason = op.cancel_reason;
  Object.assign(op, resource);
  if (reason && resource.cancel_reason === undefined) op.cancel_reason = reason;
  return true;
}

/**
 * Collects dirty keys and flushes them in an animation frame — at most one
 * flush per `minIntervalMs` (each drawn frame has a fixed cost: style,
 * layout, paint; ten a second is plenty for progress bars).
 * @template T
 */
export class FrameBatcher {
  /**
   * @param {(keys: Set<T>) => void} flush
   * @param {{minIntervalMs?: number}} [options]
   */
  constructor(flush, options = {}) {
    this.flush = flush;
    this.minIntervalMs = options.minIntervalMs ?? 0;
    /** @type {Set<T>} */
    this.dirty = new Set();
    this.frame = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.lastFlush = -Infinity;
    this.stopped = false;
  }

  /** @param {T} key */
  mark(key) {
    this.dirty.add(key);
    if (this.frame || this.timer || this.stopped) return;
    const wait = this.lastFlush + this.minIntervalMs - performance.now();
    if (wait <= 0) {
      this.frame = requestAnimationFrame(() => this.run());
    } else {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.frame = requestAnimationFrame(() => this.run());
      }, wait);
    }
  }

  run() {
    this.frame = 0;
    if (this.stopped || this.dirty.size === 0) return;
    this.lastFlush = performance.now();
    const keys = this.dirty;
    this.dirty = new Set();
    this.flush(keys);
    stats.flushes += 1;
  }

  stop() {
    this.stopped = true;
    if (this.frame) cancelAnimationFrame(this.frame);
    if (this.timer) clearTimeout(this.timer);
    this.frame = 0;
    this.timer = null;
    this.dirty.clear();
  }
}

/**
 * Counters for diagnostics (and the browser tests): frames received,
 * batched flushes, rows redrawn. Read them as `window.longrunStats`.
 */
export const stats = { events: 0, flushes: 0, rowUpdates: 0 };
/** @type {any} */ (window).longrunStats = stats;
