// @ts-check
/**
 * One operation: progress bar and message, partial result data, the event
 * timeline, a summary of its children and a paged table of them, its result
 * or error, and the cancel and delete buttons.
 *
 * The page reads the resource and the tail of its event log, then follows
 * the operation with `after_seq` set to the last event it has: the gateway
 * sends every later event once, in order, also after a reconnect. Children
 * on the shown page are followed one by one. Counts of children waiting or
 * running change without an event of the parent, so the resource is read
 * again every two seconds while the operation runs and the page is visible.
 */

import { ApiError, operationPath } from '../api.js';
import { h, replace, setText } from '../dom.js';
import { elapsedText, jsonLine, jsonText, percentText, preciseTimeText, shortId, timeText } from '../format.js';
import { FrameBatcher, applyEvent, isTerminal, mergeResource, stats } from '../opstate.js';
import { cell, gridRow, operationHref, opsGrid, progressBar, statusBadge, summaryMessage, updateProgressBar, updateStatusBadge } from '../widgets.js';

/** @typedef {import('../opstate.js').Operation} Operation */
/** @typedef {import('../main.js').Context} Context */
/** @typedef {{tr: HTMLElement, badge: HTMLElement, progress: ReturnType<typeof progressBar>, message: HTMLElement, attempts: HTMLElement}} ChildRow */

/** Events shown in the timeline at most (the newest). */
const TIMELINE_KEEP = 500;
const CHILDREN_PAGE = 50;
const REFRESH_EVERY_MS = 2_000;
const CHILD_STATUSES = /** @type {const} */ (['succeeded', 'failed', 'cancelled', 'running', 'queued']);

/**
 * @param {HTMLElement} root
 * @param {Context} ctx
 * @param {string} id
 */
export function mountOperation(root, ctx, id) {
  /** @type {Operation | null} */
  let op = null;
  let unmounted = false;
  /** @type {any[]} events waiting to be drawn */
  let pendingEvents = [];
  let lastTimelineSeq = 0;
  let timelineCount = 0;
  /** @type {(() => void) | null} */
  let stopFollowing = null;

  // children page
  /** @type {Operation[]} */
  let children = [];
  /** @type {Map<string, ChildRow>} */
  const childRows = new Map();
  /** @type {Map<string, () => void>} */
  const childFollows = new Map();
  /** @type {string | null} */
  let childCursor = null;
  /** @type {Array<string | null>} */
  let childHistory = [];
  /** @type {string | null} */
  let childNext = null;
  let childrenLoadedTotal = -1;
  let childLoadSeq = 0;

  // --- skeleton ---
  const title = h('h1', { attrs: { id: 'op-title' } });
  const badge = statusBadge('queued');
  badge.id = 'op-status';
  const cancelButton = h('button', { className: 'danger', attrs: { type: 'button', id: 'op-cancel' }, text: 'Cancel', on: { click: () => cancel() } });
  const deleteButton = h('button', { className: 'secondary', attrs: { type: 'button', id: 'op-delete' }, text: 'Delete', on: { click: () => remove() } });
  const progress = progressBar('progress');
  progress.element.id = 'op-progress';
  progress.element.classList.add('large');
  const message = h('p', { className: 'op-message', attrs: { id: 'op-message' } });
  const meta = h('dl', { className: 'meta', attrs: { id: 'op-meta' } });
  const outcome = h('section', { className: 'card outcome', attrs: { id: 'op-outcome' }, props: { hidden: true } });
  const partialPre = h('pre', { className: 'json', attrs: { id: 'op-partial' } });
  const partial = h('section', { className: 'card', props: { hidden: true } }, h('h2', { text: 'Partial result' }), partialPre);
  const gone = h('div', { className: 'banner warning', attrs: { role: 'status' }, props: { hidden: true } });

  const childSummary = h('div', { className: 'child-summary', attrs: { id: 'op-children-summary' } });
  const childBar = h('div', { className: 'stacked', attrs: { 'aria-hidden': 'true' } });
  const childGrid = opsGrid({
    id: 'op-children',
    label: 'Children',
    className: 'children',
    columns: [['col-status', 'Status'], ['col-progress', 'Progress'], ['col-message', 'Message'], ['col-attempts', 'Attempts'], ['col-id', 'Id']],
  });
  const childTable = childGrid.element;
  const childBody = childGrid.body;
  const childInfo = h('span', { className: 'muted' });
  const childPrev = h('button', { className: 'secondary', attrs: { type: 'button', id: 'children-prev' }, text: '← Previous', on: { click: () => childPage(-1) } });
  const childNextButton = h('button', { className: 'secondary', attrs: { type: 'button', id: 'children-next' }, text: 'Next →', on: { click: () => childPage(1) } });
  const childrenSection = h('section', { className: 'card', attrs: { id: 'op-children-section' }, props: { hidden: true } },
    h('h2', { text: 'Children' }), childBar, childSummary,
    childTable,
    h('nav', { className: 'pager', attrs: { 'aria-label': 'Pages of children' } }, childPrev, childInfo, childNextButton));
  childBody.addEventListener('click', (event) => {
    const target = /** @type {HTMLElement} */ (event.target);
    if (target.closest('a')) return;
    const tr = /** @type {HTMLElement | null} */ (target.closest('.op-row'));
    if (tr?.dataset.id) ctx.navigate(operationHref(tr.dataset.id));
  });

  const timeline = h('ol', { className: 'timeline', attrs: { id: 'op-timeline', reversed: true } });
  const timelineNote = h('p', { className: 'muted' });
  const crumbs = h('nav', { className: 'crumbs' }, h('a', { attrs: { href: '#/operations' }, text: '← Operations' }));
  const body = h('div', { className: 'op-body', props: { hidden: true } },
    h('div', { className: 'card' },
      h('div', { className: 'op-head' }, title, badge, h('div', { className: 'actions' }, cancelButton, deleteButton)),
      h('div', { className: 'op-id' }, h('code', { attrs: { id: 'op-id' }, text: id }),
        h('button', { className: 'link', attrs: { type: 'button' }, text: 'copy', on: { click: copyId } })),
      progress.element,
      message,
      meta),
    outcome,
    partial,
    childrenSection,
    h('section', { className: 'card' }, h('h2', { text: 'Events' }), timelineNote, timeline));
  const loading = h('p', { className: 'muted', text: 'Loading…' });
  replace(root, h('section', { className: 'view view-op' }, crumbs, gone, loading, body));

  const batcher = new FrameBatcher(flush);
  const feed = ctx.openFeed();
  feed.onResync(() => {
    refresh();
    loadChildren();
  });
  const clock = setInterval(() => {
    if (op && !op.done) batcher.mark('clock');
  }, 1000);
  const poller = setInterval(() => {
    if (op && !op.done && document.visibilityState === 'visible') refresh();
  }, REFRESH_EVERY_MS);

  start();

  // --- loading and following ---

  async function start() {
    try {
      op = await ctx.api.get(operationPath(id));
    } catch (err) {
      if (unmounted) return;
      loading.hidden = true;
      showGone(err instanceof ApiError && err.status === 404
        ? 'No such operation: it never existed, was deleted, or is not yours.'
        : `Could not read the operation: ${err instanceof Error ? err.message : err}`);
      return;
    }
    if (unmounted || !op) return;
    loading.hidden = true;
    body.hidden = false;
    const from = Math.max(0, op.seq - TIMELINE_KEEP);
    lastTimelineSeq = from;
    try {
      const page = await ctx.api.get(`${operationPath(id)}/events`, { after_seq: from, limit: 1000 });
      if (unmounted) return;
      for (const event of page?.events ?? []) onEvent(toFrame(event));
    } catch {
      // The follow below replays the log from `from` instead.
    }
    if (from > 0) setText(timelineNote, `Showing the latest events; ${from.toLocaleString()} earlier ones are not shown.`);
    batcher.mark('op');
    if (!op.done) follow();
    else batcher.mark('children');
  }

  function follow() {
    stopFollowing?.();
    stopFollowing = feed.follow(id, { afterSeq: lastTimelineSeq }, (frame) => {
      if (frame.type === 'event') onEvent(frame);
      else if (frame.type === 'error' && frame.code === 'not_found') showGone('This operation no longer exists (it was deleted).');
    });
  }

  /** @param {any} frame */
  function onEvent(frame) {
    if (!op) return;
    stats.events += 1;
    const seq = Number(frame.seq);
    if (seq <= lastTimelineSeq) return;
    if (frame.event === 'cancelled' && typeof frame.data?.reason === 'string' && !op.cancel_reason) {
      // The resource does not carry the reason; its event does (it may come after the resource).
      op.cancel_reason = frame.data.reason;
      batcher.mark('op');
    }
    const skipped = lastTimelineSeq > 0 && seq > lastTimelineSeq + 1 ? seq - lastTimelineSeq - 1 : 0;
    lastTimelineSeq = seq;
    pendingEvents.push({ frame, skipped });
    batcher.mark('timeline');
    if (applyEvent(op, frame)) batcher.mark('op');
    if (isTerminal(frame.event)) {
      refresh();
      loadChildren();
    }
  }

  async function refresh() {
    let fresh;
    try {
      fresh = await ctx.api.get(operationPath(id));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) showGone('This operation no longer exists (it was deleted).');
      return;
    }
    if (unmounted || !op || !fresh) return;
    if (mergeResource(op, fresh)) batcher.mark('op');
  }

  // --- children ---

  async function loadChildren() {
    if (!op || op.children.total === 0) return;
    const mine = ++childLoadSeq;
    let page;
    try {
      page = await ctx.api.get(`${operationPath(id)}/children`, { cursor: childCursor, limit: CHILDREN_PAGE });
    } catch {
      return;
    }
    if (unmounted || mine !== childLoadSeq) return;
    childrenLoadedTotal = op.children.total;
    childNext = typeof page?.next_cursor === 'string' ? page.next_cursor : null;
    /** @type {Operation[]} */
    const fetched = page?.operations ?? [];
    const previous = new Map(children.map((child) => [child.id, child]));
    children = fetched.map((child) => {
      const known = previous.get(child.id);
      return known && known.seq > child.seq ? known : child;
    });
    drawChildren();
  }

  function drawChildren() {
    for (const stop of childFollows.values()) stop();
    childFollows.clear();
    childRows.clear();
    const fragment = document.createDocumentFragment();
    const offset = childHistory.length * CHILDREN_PAGE;
    children.forEach((child, index) => {
      const row = createChildRow(child, offset + index + 1);
      childRows.set(child.id, row);
      fragment.append(row.tr);
      if (!child.done) {
        childFollows.set(child.id, feed.follow(child.id, {}, (frame) => {
          stats.events += 1;
          const changed = frame.type === 'subscribed' ? mergeResource(child, frame.operation)
            : frame.type === 'event' ? applyEvent(child, frame) : false;
          if (changed) batcher.mark(`child:${child.id}`);
        }));
      }
    });
    childBody.replaceChildren(fragment);
    childPrev.disabled = childHistory.length === 0;
    childNextButton.disabled = childNext === null;
    const first = children.length === 0 ? 0 : offset + 1;
    setText(childInfo, `${first.toLocaleString()}–${(offset + children.length).toLocaleString()} of ${op?.children.total.toLocaleString() ?? 0}`);
  }

  /** @param {number} direction */
  function childPage(direction) {
    if (direction > 0 && childNext !== null) {
      childHistory.push(childCursor);
      childCursor = childNext;
    } else if (direction < 0 && childHistory.length > 0) {
      childCursor = childHistory.pop() ?? null;
    } else {
      return;
    }
    loadChildren();
  }

  /**
   * @param {Operation} child
   * @param {number} number its place among the children
   */
  function createChildRow(child, number) {
    const rowBadge = statusBadge(child.status);
    const rowProgress = progressBar(`progress of child ${number}`);
    const rowMessage = cell('col-message');
    const attempts = cell('col-attempts');
    const tr = gridRow(child.id,
      cell('col-status', {}, rowBadge),
      cell('col-progress', {}, rowProgress.element),
      rowMessage,
      attempts,
      cell('col-id', {}, h('a', { attrs: { href: operationHref(child.id), title: child.id }, text: `#${number} ${shortId(child.id)}` })));
    const row = { tr, badge: rowBadge, progress: rowProgress, message: rowMessage, attempts };
    updateChildRow(row, child);
    return row;
  }

  /**
   * @param {ChildRow} row
   * @param {Operation} child
   */
  function updateChildRow(row, child) {
    updateStatusBadge(row.badge, child.status);
    updateProgressBar(row.progress, child.progress?.percent ?? 0, child.status);
    setText(row.message, summaryMessage(child));
    setText(row.attempts, `${child.attempt} of ${child.max_attempts || '?'}`);
  }

  // --- drawing ---

  /** @param {Set<string>} keys */
  function flush(keys) {
    if (!op) return;
    if (keys.has('timeline')) drawTimeline();
    if (keys.has('op')) drawOperation(op);
    else if (keys.has('clock')) drawMeta(op);
    for (const key of keys) {
      if (!key.startsWith('child:')) continue;
      const childId = key.slice(6);
      const row = childRows.get(childId);
      const child = children.find((c) => c.id === childId);
      if (row && child) updateChildRow(row, child);
    }
    if (keys.has('children') || keys.has('op')) maybeReloadChildren(op);
  }

  /** @param {Operation} current */
  function drawOperation(current) {
    setText(title, current.kind);
    updateStatusBadge(badge, current.status);
    updateProgressBar(progress, current.progress?.percent ?? 0, current.status);
    setText(message, current.progress?.message ?? '');
    message.hidden = !current.progress?.message;
    cancelButton.disabled = current.done;
    cancelButton.hidden = current.done;
    deleteButton.disabled = !current.done;
    deleteButton.title = current.done ? 'Delete this operation, its children and its events' : 'Only finished operations can be deleted';
    if (current.parent_id && !crumbs.querySelector('.parent')) {
      crumbs.append(' · ', h('a', { className: 'parent', attrs: { href: operationHref(current.parent_id) }, text: `parent ${shortId(current.parent_id)}` }));
    }
    drawMeta(current);
    drawOutcome(current);
    const data = current.progress?.data;
    partial.hidden = data === null || data === undefined;
    if (!partial.hidden) setText(partialPre, jsonText(data));
    drawChildSummary(current);
  }

  /** @param {Operation} current */
  function drawMeta(current) {
    /** @type {Array<[string, string | Node]>} */
    const items = [
      ['Owner', current.owner],
      ['Attempt', `${current.attempt} of ${current.max_attempts}`],
      ['Created', timeText(current.created_at)],
      ['Started', timeText(current.started_at)],
      ['Finished', timeText(current.finished_at)],
      ['Elapsed', current.started_at || current.done ? elapsedText(current) : '—'],
      ['Events', `#${current.seq}`],
    ];
    if (meta.childElementCount !== items.length) {
      replace(meta, items.map(([name]) => h('div', {}, h('dt', { text: name }), h('dd', { data: { field: name.toLowerCase() } }))));
    }
    const values = meta.querySelectorAll('dd');
    items.forEach(([, value], index) => setText(values[index], String(value)));
  }

  /** @param {Operation} current */
  function drawOutcome(current) {
    outcome.hidden = !current.done;
    if (!current.done) return;
    const drawn = `${current.status}:${current.seq}:${current.cancel_reason ?? ''}`;
    if (outcome.dataset.drawn === drawn) return;
    outcome.dataset.drawn = drawn;
    if (current.status === 'succeeded') {
      replace(outcome, h('h2', { text: 'Result' }), h('pre', { className: 'json', attrs: { id: 'op-result' }, text: jsonText(current.result) }));
    } else if (current.status === 'failed') {
      const error = current.error;
      replace(outcome, h('h2', { text: 'Error' }),
        h('p', { className: 'error-line', attrs: { id: 'op-error' } },
          h('code', { text: error?.code ?? 'unknown' }), ' ', h('span', { text: error?.message ?? 'no message' })),
        error?.retryable ? h('p', { className: 'muted', text: 'The error was retryable, but no attempts were left.' }) : null);
    } else {
      replace(outcome, h('h2', { text: 'Cancelled' }),
        h('p', { attrs: { id: 'op-cancel-reason' }, text: current.cancel_reason ?? 'The operation was cancelled.' }));
    }
  }

  /** @param {Operation} current */
  function drawChildSummary(current) {
    const counts = current.children;
    childrenSection.hidden = counts.total === 0;
    if (counts.total === 0) return;
    replace(childSummary, CHILD_STATUSES.map((status) =>
      h('span', { className: 'count', data: { status } },
        h('span', { className: 'dot' }), `${status} `, h('strong', { text: (counts[status] ?? 0).toLocaleString() }))),
    h('span', { className: 'count total' }, 'total ', h('strong', { text: counts.total.toLocaleString() })));
    if (childBar.childElementCount === 0) {
      replace(childBar, CHILD_STATUSES.map((status) => h('span', { data: { status } })));
    }
    for (const segment of childBar.querySelectorAll('span')) {
      const status = /** @type {typeof CHILD_STATUSES[number]} */ (segment.dataset.status);
      segment.style.flexGrow = String(counts[status] ?? 0);
    }
  }

  /** @param {Operation} current */
  function maybeReloadChildren(current) {
    if (current.children.total === 0) return;
    const grew = current.children.total !== childrenLoadedTotal;
    const pageOpen = childNext === null && children.length < CHILDREN_PAGE;
    if (childrenLoadedTotal < 0 || (grew && pageOpen)) {
      childrenLoadedTotal = current.children.total;
      loadChildren();
    }
  }

  function drawTimeline() {
    const events = pendingEvents;
    pendingEvents = [];
    const fragment = document.createDocumentFragment();
    for (const { frame, skipped } of events) {
      if (skipped > 0) {
        fragment.prepend(h('li', { className: 'gap', text: `${skipped} progress event${skipped === 1 ? '' : 's'} merged by the gateway` }));
      }
      fragment.prepend(timelineItem(frame));
    }
    timeline.prepend(fragment);
    timelineCount += events.length;
    while (timeline.childElementCount > TIMELINE_KEEP) timeline.lastElementChild?.remove();
  }

  /** @param {any} frame */
  function timelineItem(frame) {
    return h('li', { data: { seq: String(frame.seq), event: String(frame.event) } },
      h('span', { className: 'seq', text: `#${frame.seq}` }),
      h('time', { attrs: { datetime: frame.at }, text: preciseTimeText(frame.at) }),
      h('span', { className: 'event', data: { event: String(frame.event) }, text: String(frame.event) }),
      h('span', { className: 'summary', text: eventSummary(frame) }));
  }

  // --- actions ---

  async function cancel() {
    if (!op || op.done) return;
    const unfinished = op.children.queued + op.children.running;
    const ok = await ctx.confirm({
      title: 'Cancel this operation?',
      body: `${op.kind} ${shortId(op.id)}${unfinished > 0 ? ` and its ${unfinished.toLocaleString()} unfinished children` : ''} will stop. This cannot be undone.`,
      confirmLabel: 'Cancel operation',
      cancelLabel: 'Keep running',
      danger: true,
    });
    if (!ok || unmounted) return;
    cancelButton.disabled = true;
    try {
      const fresh = await ctx.api.post(`${operationPath(id)}/cancel`);
      if (op && fresh && mergeResource(op, fresh)) batcher.mark('op');
      ctx.toast('Cancelled.');
    } catch (err) {
      ctx.toast(`Could not cancel: ${err instanceof Error ? err.message : err}`, 'error');
      refresh();
    }
  }

  async function remove() {
    if (!op || !op.done) return;
    const ok = await ctx.confirm({
      title: 'Delete this operation?',
      body: `${op.kind} ${shortId(op.id)}, its ${op.children.total > 0 ? `${op.children.total.toLocaleString()} children and its ` : ''}events will be removed for good.`,
      confirmLabel: 'Delete',
      cancelLabel: 'Keep it',
      danger: true,
    });
    if (!ok || unmounted) return;
    try {
      await ctx.api.del(operationPath(id));
      ctx.toast(`Deleted ${shortId(id)}.`);
      ctx.navigate('#/operations');
    } catch (err) {
      ctx.toast(`Could not delete: ${err instanceof Error ? err.message : err}`, 'error');
    }
  }

  async function copyId() {
    try {
      await navigator.clipboard.writeText(id);
      ctx.toast('Id copied.');
    } catch {
      const selection = window.getSelection();
      const code = root.querySelector('#op-id');
      if (selection && code) selection.selectAllChildren(code);
    }
  }

  /** @param {string} text */
  function showGone(text) {
    gone.hidden = false;
    setText(gone, text);
    cancelButton.disabled = true;
    stopFollowing?.();
  }

  return {
    unmount() {
      unmounted = true;
      clearInterval(clock);
      clearInterval(poller);
      batcher.stop();
      feed.close();
    },
  };
}

/**
 * An event of the log (`GET …/events`) in the shape of a live frame.
 * @param {any} event
 */
function toFrame(event) {
  return { type: 'event', operation_id: event.operation_id, seq: event.seq, event: event.type ?? event.event, at: event.at, data: event.data };
}

/**
 * One line saying what an event means.
 * @param {any} frame
 */
export function eventSummary(frame) {
  const data = frame.data && typeof frame.data === 'object' ? frame.data : {};
  switch (frame.event) {
    case 'created':
      return data.parent_id ? `created as a child of ${shortId(String(data.parent_id))}` : `created (${data.kind ?? 'operation'})`;
    case 'started':
      return `attempt ${data.attempt ?? '?'} started`;
    case 'progress':
      return [percentText(data.percent), data.message].filter((part) => part !== null && part !== undefined && part !== '').join(' · ');
    case 'retrying': {
      const why = data.error?.message ?? data.reason ?? 'failed';
      const when = Number.isFinite(data.retry_in_ms) ? `; next attempt in ${data.retry_in_ms} ms` : '';
      return `attempt ${data.attempt ?? '?'} ended: ${why}${when}`;
    }
    case 'succeeded':
      return `succeeded · ${jsonLine(data.result)}`;
    case 'failed':
      return `failed · ${data.error?.code ?? ''} ${data.error?.message ?? ''}`.trim();
    case 'cancelled':
      return `cancelled · ${data.reason ?? ''}`;
    default:
      return jsonLine(data);
  }
}
