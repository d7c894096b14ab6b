// @ts-check
/**
 * One WebSocket connection to the gateway, kept open by itself.
 *
 * A view opens a {@link Feed}, says what it follows — every operation of the
 * signed-in user (`owner: "self"`) and/or single operations — and closes it
 * when it goes away, so no frame of one view can reach another.
 *
 * The token goes in a first `auth` frame (not in the URL, which servers
 * log). When the connection drops, the feed reconnects with a growing,
 * jittered delay, and resubscribes each followed operation with `after_seq`
 * set to the last seq it delivered: the gateway replays what was missed, so
 * a follower sees every event once, in order. The owner subscription has no
 * log to replay; its views re-read what they show on `onResync`.
 */

/** @typedef {'connecting' | 'live' | 'reconnecting' | 'closed'} FeedState */
/** @typedef {{state: FeedState, attempt: number, retryInMs: number, reason: string}} FeedStatus */
/** @typedef {(frame: any) => void} FrameListener */

/** Close codes of the gateway (contract v1). */
const CLOSE_UNAUTHORIZED = 4001;
const CLOSE_TOO_SLOW = 4008;
const CLOSE_TOO_MANY = 4029;

const PING_EVERY_MS = 15_000;
/** No frame at all for this long (pings included) means the link is dead. */
const SILENCE_LIMIT_MS = 40_000;
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 10_000;

/**
 * One followed operation.
 * @typedef {{listener: FrameListener, lastSeq: number | null, done: boolean}} Follow
 */

export class Feed {
  /**
   * @param {{
   *   url: string,
   *   token: string,
   *   onStatus?: (status: FeedStatus) => void,
   *   onUnauthorized?: (reason: string) => void,
   * }} options
   */
  constructor(options) {
    this.url = options.url;
    this.token = options.token;
    this.onStatus = options.onStatus ?? (() => {});
    this.onUnauthorized = options.onUnauthorized ?? (() => {});
    /** @type {WebSocket | null} */
    this.socket = null;
    /** @type {Map<string, Follow>} */
    this.follows = new Map();
    /** @type {Set<FrameListener>} */
    this.ownerListeners = new Set();
    /** @type {Set<() => void>} */
    this.resyncListeners = new Set();
    /** @type {Array<() => void>} */
    this.pongWaiters = [];
    /** @type {Array<() => void>} barriers asked for while not connected */
    this.pendingBarriers = [];
    this.attempt = 0;
    this.opens = 0;
    this.closed = false;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.retryTimer = null;
    /** @type {ReturnType<typeof setInterval> | null} */
    this.pingTimer = null;
    this.lastHeard = 0;
    /** @type {FeedStatus} */
    this.status = { state: 'connecting', attempt: 0, retryInMs: 0, reason: '' };
    this.onOnline = () => {
      if (this.status.state === 'reconnecting') this.reconnectNow();
    };
    window.addEventListener('online', this.onOnline);
  }

  /** Opens the connection. */
  start() {
    this.connect();
    return this;
  }

  /** Closes for good: no reconnect, no more frames. */
  close() {
    this.closed = true;
    window.removeEventListener('online', this.onOnline);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.stopPinging();
    this.follows.clear();
    this.ownerListeners.clear();
    this.resyncListeners.clear();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      socket.close(1000, 'view closed');
    }
    this.setStatus({ state: 'closed', attempt: 0, retryInMs: 0, reason: '' });
  }

  /**
   * Every event of every operation of the signed-in user, live.
   * @param {FrameListener} listener
   * @returns {() => void} stops listening
   */
  watchOwner(listener) {
    const first = this.ownerListeners.size === 0;
    this.ownerListeners.add(listener);
    if (first) this.send({ type: 'subscribe', owner: 'self' });
    return () => {
      this.ownerListeners.delete(listener);
      if (this.ownerListeners.size === 0) this.send({ type: 'unsubscribe', owner: 'self' });
    };
  }

  /**
   * Follows one operation: its `subscribed`, `event` and `error` frames go to
   * `listener`, each event once and in seq order, across reconnects.
   * @param {string} id
   * @param {{afterSeq?: number | null}} from with `afterSeq`, the log after it is replayed first; else a `subscribed` frame brings the current resource
   * @param {FrameListener} listener
   * @returns {() => void} stops following
   */
  follow(id, from, listener) {
    const follow = { listener, lastSeq: from.afterSeq ?? null, done: false };
    this.follows.set(id, follow);
    this.sendSubscribe(id, follow);
    return () => {
      if (this.follows.get(id) !== follow) return;
      this.follows.delete(id);
      if (!follow.done) this.send({ type: 'unsubscribe', operation_id: id });
    };
  }

  /**
   * Called after a reconnect, and when the gateway says owner events may
   * have been missed: views re-read what they show.
   * @param {() => void} listener
   */
  onResync(listener) {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  /**
   * Resolves once the gateway has handled every frame sent so far (a ping's
   * pong comes after them), or after `timeoutMs`.
   * @param {number} timeoutMs
   * @returns {Promise<boolean>} true when the barrier was reached
   */
  barrier(timeoutMs) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.pongWaiters.push(done);
        this.send({ type: 'ping' });
      } else {
        // Not open yet: the barrier is taken right after the next open.
        this.pendingBarriers.push(done);
      }
    });
  }

  /** Drops the current connection and connects again at once. */
  reconnectNow() {
    if (this.closed) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(4000, 'reconnecting');
      } catch {
        // already closed
      }
    }
    this.connect();
  }

  // --- internals ---

  connect() {
    if (this.closed) return;
    this.setStatus({
      state: this.opens === 0 && this.attempt === 0 ? 'connecting' : 'reconnecting',
      attempt: this.attempt,
      retryInMs: 0,
      reason: this.status.reason,
    });
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (err) {
      this.scheduleRetry(`cannot open ${this.url}: ${err instanceof Error ? err.message : err}`);
      return;
    }
    this.socket = socket;
    socket.onopen = () => this.opened(socket);
    socket.onmessage = (message) => this.received(message);
    socket.onclose = (event) => this.dropped(socket, event);
    socket.onerror = () => {
      // onclose follows with the code; nothing to do here.
    };
  }

  /** @param {WebSocket} socket */
  opened(socket) {
    if (socket !== this.socket) return;
    const reconnected = this.opens > 0;
    this.opens += 1;
    this.attempt = 0;
    this.lastHeard = Date.now();
    socket.send(JSON.stringify({ type: 'auth', token: this.token }));
    if (this.ownerListeners.size > 0) this.send({ type: 'subscribe', owner: 'self' });
    for (const [id, follow] of this.follows) {
      if (!follow.done) this.sendSubscribe(id, follow);
    }
    if (this.pendingBarriers.length > 0) {
      this.pongWaiters.push(...this.pendingBarriers);
      this.pendingBarriers = [];
      this.send({ type: 'ping' });
    }
    this.startPinging();
    this.setStatus({ state: 'live', attempt: 0, retryInMs: 0, reason: '' });
    if (reconnected) this.resync();
  }

  /** @param {MessageEvent} message */
  received(message) {
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    if (!frame || typeof frame !== 'object') return;
    switch (frame.type) {
      case 'event':
      case 'subscribed':
        this.deliver(frame);
        break;
      case 'error':
        this.onError(frame);
        break;
      case 'pong': {
        const waiters = this.pongWaiters;
        this.pongWaiters = [];
        for (const done of waiters) done();
        break;
      }
      default:
        break;
    }
  }

  /** @param {any} frame */
  deliver(frame) {
    const id = String(frame.operation_id ?? '');
    const follow = this.follows.get(id);
    if (!follow) {
      if (frame.type === 'event') for (const listener of this.ownerListeners) listener(frame);
      return;
    }
    if (frame.type === 'subscribed') {
      const seq = Number(frame.operation?.seq ?? 0);
      follow.lastSeq = Math.max(follow.lastSeq ?? 0, seq);
      if (frame.operation?.done) follow.done = true;
      follow.listener(frame);
      return;
    }
    const seq = Number(frame.seq);
    if (follow.lastSeq !== null && seq <= follow.lastSeq) return; // already delivered
    follow.lastSeq = seq;
    if (['succeeded', 'failed', 'cancelled'].includes(frame.event)) follow.done = true;
    follow.listener(frame);
  }

  /** @param {any} frame */
  onError(frame) {
    const id = frame.operation_id ? String(frame.operation_id) : null;
    if (id && this.follows.has(id)) {
      const follow = /** @type {Follow} */ (this.follows.get(id));
      if (frame.code === 'not_found') follow.done = true;
      follow.listener(frame);
      return;
    }
    if (frame.code === 'resync') this.resync();
  }

  resync() {
    for (const listener of this.resyncListeners) listener();
  }

  /**
   * @param {WebSocket} socket
   * @param {CloseEvent} event
   */
  dropped(socket, event) {
    if (socket !== this.socket || this.closed) return;
    this.socket = null;
    this.stopPinging();
    if (event.code === CLOSE_UNAUTHORIZED) {
      this.closed = true;
      this.setStatus({ state: 'closed', attempt: 0, retryInMs: 0, reason: event.reason || 'the token was refused' });
      this.onUnauthorized(event.reason || 'The gateway refused the token.');
      return;
    }
    const reason = event.code === CLOSE_TOO_SLOW ? 'the page fell behind'
      : event.code === CLOSE_TOO_MANY ? 'too many connections for this user'
        : event.code === 1001 ? 'the gateway restarted'
          : event.reason || 'the connection was lost';
    this.scheduleRetry(reason, event.code === CLOSE_TOO_MANY ? 4 : 1);
  }

  /**
   * @param {string} reason
   * @param {number} [factor]
   */
  scheduleRetry(reason, factor = 1) {
    if (this.closed) return;
    this.attempt += 1;
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (this.attempt - 1)) * factor;
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this.setStatus({ state: 'reconnecting', attempt: this.attempt, retryInMs: delay, reason });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  startPinging() {
    this.stopPinging();
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
        this.scheduleRetryAfterSilence();
        return;
      }
      this.send({ type: 'ping' });
    }, PING_EVERY_MS);
  }

  scheduleRetryAfterSilence() {
    const socket = this.socket;
    this.socket = null;
    this.stopPinging();
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      socket.close(4000, 'silent');
    }
    this.scheduleRetry('no answer from the gateway');
  }

  stopPinging() {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  /**
   * @param {string} id
   * @param {Follow} follow
   */
  sendSubscribe(id, follow) {
    /** @type {Record<string, unknown>} */
    const frame = { type: 'subscribe', operation_id: id };
    if (follow.lastSeq !== null) frame.after_seq = follow.lastSeq;
    this.send(frame);
  }

  /** @param {unknown} frame */
  send(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
    }
  }

  /** @param {FeedStatus} status */
  setStatus(status) {
    this.status = status;
    this.onStatus(status);
  }
}
