// @ts-check
/**
 * The operations list: the signed-in user's top-level operations, newest
 * first, filtered by status and kind, a page at a time (up to 1,000 rows),
 * kept live over the WebSocket.
 *
 * Recipe: subscribe to `owner: "self"` first, wait until the gateway has
 * taken the subscription, then read the page — so nothing that happens in
 * between is missed. Events update the rows' state at once and the DOM once
 * per animation frame. Operations started while the page is open (from
 * here, the CLI or any client) appear at the top of the first page when
 * they match the filters. After a reconnect the page is read again.
 *
 * Admins see every owner's operations, with an owner column; the owner
 * channel only carries their own, so other owners' unfinished operations
 * on the page are followed one by one.
 */

import { h, replace, setText } from '../dom.js';
import { shortId, timeText } from '../format.js';
import { FrameBatcher, STATUSES, applyEvent, fromCreatedEvent, mergeResource, stats } from '../opstate.js';
import { cell, gridRow, operationHref, opsGrid, progressBar, statusBadge, summaryMessage, updateProgressBar, updateStatusBadge } from '../widgets.js';

/** @typedef {import('../opstate.js').Operation} Operation */
/** @typedef {import('../main.js').Context} Context */
/**
 * @typedef {{tr: HTMLElement, badge: HTMLElement, progress: ReturnType<typeof progressBar>, message: HTMLElement}} Row
 */

export const PAGE_SIZES = [50, 100, 250, 1000];
/** Other owners' operations followed at most (the gateway allows 1,000 subscriptions per connection). */
const MAX_FOLLOWS = 500;
/** Operations created while the page is open, remembered to place them when they match the filters. */
const MAX_REMEMBERED = 5_000;
const STRUCTURE = '\u0000structure';
/** Live changes are drawn at most this often (ms). */
const LIVE_REDRAW_MS = 100;
/** Requests at most per page when a filter keeps giving short pages. */
const MAX_FILL_ROUNDS = 10;

/**
 * @param {HTMLElement} root
 * @param {Context} ctx
 * @param {URLSearchParams} params
 */
export function mountList(root, ctx, params) {
  const me = ctx.session.claims;
  const filter = readFilter(params);
  /** @type {Map<string, Operation>} */
  const ops = new Map();
  /** @type {Map<string, Row>} */
  const rows = new Map();
  /** @type {string[]} ids on the page, newest first */
  let ids = [];
  /** @type {Map<string, Operation>} roots created while open and not on the page */
  const remembered = new Map();
  /** @type {string[]} */
  let pendingInserts = [];
  /** @type {Set<string>} operations placed from events that no read of the page has returned yet */
  const placedLive = new Set();
  /** @type {string | null} */
  let cursor = null;
  /** @type {Array<string | null>} cursors of the pages before this one */
  let history = [];
  /** @type {string | null} */
  let nextCursor = null;
  /** @type {Map<string, () => void>} */
  const follows = new Map();
  let loadSeq = 0;
  let unmounted = false;

  // --- skeleton ---
  const statusSelect = h('select', { attrs: { id: 'filter-status', name: 'status', 'aria-label': 'Status' } },
    h('option', { attrs: { value: '' }, text: 'any status' }),
    STATUSES.map((status) => h('option', { attrs: { value: status }, text: status })));
  const kindSelect = h('select', { attrs: { id: 'filter-kind', name: 'kind', 'aria-label': 'Kind' } },
    h('option', { attrs: { value: '' }, text: 'any kind' }));
  const ownerInput = me.admin
    ? h('input', { attrs: { id: 'filter-owner', name: 'owner', type: 'search', placeholder: 'every owner', 'aria-label': 'Owner', autocomplete: 'off', spellcheck: 'false' } })
    : null;
  const limitSelect = h('select', { attrs: { id: 'filter-limit', name: 'limit', 'aria-label': 'Page size' } },
    PAGE_SIZES.map((size) => h('option', { attrs: { value: size }, text: `${size} per page` })));
  const refreshButton = h('button', { className: 'secondary', attrs: { type: 'button' }, text: 'Refresh', on: { click: () => load() } });
  const filters = h('form', { className: 'filters', attrs: { role: 'search' }, on: { submit: (/** @type {Event} */ e) => { e.preventDefault(); applyFilters(); } } },
    h('label', {}, 'Status ', statusSelect),
    h('label', {}, 'Kind ', kindSelect),
    ownerInput ? h('label', {}, 'Owner ', ownerInput) : null,
    h('label', {}, limitSelect),
    refreshButton);
  for (const control of [statusSelect, kindSelect, limitSelect]) control.addEventListener('change', applyFilters);
  ownerInput?.addEventListener('change', applyFilters);

  /** @type {Array<[string, string]>} */
  const columns = [['col-status', 'Status'], ['col-kind', 'Kind'], ['col-owner', 'Owner'], ['col-progress', 'Progress'],
    ['col-message', 'Message'], ['col-created', 'Created'], ['col-id', 'Id']];
  const grid = opsGrid({
    id: 'ops',
    label: 'Operations',
    className: me.admin ? 'list with-owner' : 'list',
    columns: me.admin ? columns : columns.filter(([name]) => name !== 'col-owner'),
  });
  const table = grid.element;
  const tbody = grid.body;
  const empty = h('div', { className: 'empty', props: { hidden: true } });
  const problem = h('div', { className: 'banner error', attrs: { role: 'alert' }, props: { hidden: true } });
  const info = h('span', { className: 'muted', attrs: { id: 'list-info' } });
  const newerButton = h('button', { className: 'secondary', attrs: { type: 'button', id: 'page-newer' }, text: '← Newer', on: { click: () => newer() } });
  const olderButton = h('button', { className: 'secondary', attrs: { type: 'button', id: 'page-older' }, text: 'Older →', on: { click: () => older() } });
  const pager = h('nav', { className: 'pager', attrs: { 'aria-label': 'Pages' } }, newerButton, info, olderButton);

  replace(root,
    h('section', { className: 'view view-list' },
      h('div', { className: 'view-head' },
        h('h1', { text: me.admin ? 'Operations of every owner' : 'Your operations' }),
        h('a', { className: 'button', attrs: { href: '#/start' }, text: 'Start an operation' })),
      filters,
      problem,
      table,
      empty,
      pager));

  tbody.addEventListener('click', (event) => {
    const target = /** @type {HTMLElement} */ (event.target);
    if (target.closest('a')) return;
    const tr = /** @type {HTMLElement | null} */ (target.closest('.op-row'));
    if (tr?.dataset.id) ctx.navigate(operationHref(tr.dataset.id));
  });

  const batcher = new FrameBatcher(flush, { minIntervalMs: LIVE_REDRAW_MS });
  const feed = ctx.openFeed();
  feed.watchOwner(onOwnerFrame);
  feed.onResync(() => load({ quiet: true }));
  const onVisible = () => {
    if (document.visibilityState === 'visible') load({ quiet: true });
  };
  document.addEventListener('visibilitychange', onVisible);

  showFilter();
  fillKinds();
  // Subscribe first, then read: events of the gap are not lost.
  feed.barrier(3000).then(() => load());

  // --- data ---

  /** @param {{quiet?: boolean}} [options] */
  async function load(options = {}) {
    const mine = ++loadSeq;
    if (!options.quiet) root.querySelector('.view-list')?.classList.add('loading');
    /** @type {Operation[]} */
    let fetched = [];
    /** @type {string | null} */
    let next = cursor;
    try {
      // A selective filter may give a short page with a cursor to go on: fill the page.
      for (let round = 0; round < MAX_FILL_ROUNDS; round += 1) {
        const page = await ctx.api.get('/v1/operations', {
          status: filter.status,
          kind: filter.kind,
          owner: me.admin ? filter.owner : null,
          limit: filter.limit - fetched.length,
          cursor: next,
        });
        if (Array.isArray(page?.operations)) fetched = fetched.concat(page.operations);
        next = typeof page?.next_cursor === 'string' ? page.next_cursor : null;
        if (next === null || fetched.length >= filter.limit || mine !== loadSeq) break;
      }
    } catch (err) {
      if (mine !== loadSeq || unmounted) return;
      root.querySelector('.view-list')?.classList.remove('loading');
      showProblem(err instanceof Error ? err.message : String(err));
      return;
    }
    if (mine !== loadSeq || unmounted) return;
    root.querySelector('.view-list')?.classList.remove('loading');
    showProblem(null);
    // Defence in depth: a user's list never shows another owner's operation.
    if (!me.admin) fetched = fetched.filter((op) => op.owner === me.sub);
    nextCursor = next;
    render(fetched);
  }

  /** @param {Operation[]} fetched */
  function render(fetched) {
    /** @type {Map<string, Operation>} */
    const fresh = new Map();
    for (const op of fetched) {
      const known = ops.get(op.id);
      if (known && known.seq > op.seq) fresh.set(op.id, known);
      else {
        if (known?.cancel_reason) op.cancel_reason = known.cancel_reason;
        fresh.set(op.id, op);
      }
      remembered.delete(op.id);
    }
    // Operations created while the read was under way are not in it: keep them.
    const firstPage = history.length === 0 && cursor === null;
    for (const id of [...placedLive]) {
      const op = ops.get(id);
      if (!firstPage || fresh.has(id) || !op || !matches(op)) placedLive.delete(id);
      else fresh.set(id, op);
    }
    ops.clear();
    for (const [id, op] of fresh) ops.set(id, op);
    ids = [...fresh.keys()].sort().reverse();
    pendingInserts = [];
    rows.clear();
    const fragment = document.createDocumentFragment();
    for (const id of ids) {
      const row = createRow(/** @type {Operation} */ (ops.get(id)));
      rows.set(id, row);
      fragment.append(row.tr);
    }
    tbody.replaceChildren(fragment);
    followOthers();
    showPaging();
  }

  /** Other owners' unfinished operations on the page, followed one by one (admins). */
  function followOthers() {
    for (const stop of follows.values()) stop();
    follows.clear();
    if (!me.admin) return;
    for (const id of ids) {
      if (follows.size >= MAX_FOLLOWS) break;
      const op = ops.get(id);
      if (!op || op.done || op.owner === me.sub) continue;
      follows.set(id, feed.follow(id, {}, (frame) => {
        const current = ops.get(id);
        if (!current) return;
        stats.events += 1;
        const changed = frame.type === 'subscribed' ? mergeResource(current, frame.operation)
          : frame.type === 'event' ? applyEvent(current, frame) : false;
        if (changed) batcher.mark(id);
      }));
    }
  }

  /** @param {any} frame */
  function onOwnerFrame(frame) {
    stats.events += 1;
    const id = String(frame.operation_id);
    const op = ops.get(id);
    if (op) {
      if (applyEvent(op, frame)) batcher.mark(id);
      return;
    }
    if (frame.event === 'created') {
      if (frame.data?.parent_id) return; // a child: the list shows top-level operations
      const fresh = fromCreatedEvent(frame, me.sub);
      remember(fresh);
      place(fresh);
      return;
    }
    const root = remembered.get(id);
    if (root) {
      applyEvent(root, frame);
      place(root);
      if (root.done) remembered.delete(id);
    }
  }

  /** @param {Operation} op */
  function remember(op) {
    remembered.set(op.id, op);
    if (remembered.size > MAX_REMEMBERED) {
      const oldest = remembered.keys().next().value;
      if (oldest !== undefined) remembered.delete(oldest);
    }
  }

  /** Puts a live-created operation on the first page when it matches the filters. @param {Operation} op */
  function place(op) {
    if (history.length > 0 || cursor !== null || ops.has(op.id) || !matches(op)) return;
    remembered.delete(op.id);
    ops.set(op.id, op);
    placedLive.add(op.id);
    pendingInserts.push(op.id);
    batcher.mark(STRUCTURE);
  }

  /** @param {Operation} op */
  function matches(op) {
    return (!filter.status || op.status === filter.status)
      && (!filter.kind || op.kind === filter.kind)
      && (!filter.owner || op.owner === filter.owner);
  }

  // --- drawing ---

  /** @param {Set<string>} keys */
  function flush(keys) {
    if (keys.has(STRUCTURE)) insertPending();
    for (const id of keys) {
      const op = ops.get(id);
      const row = rows.get(id);
      if (op && row) updateRow(row, op);
    }
  }

  function insertPending() {
    const inserts = pendingInserts;
    pendingInserts = [];
    for (const id of inserts) {
      const op = ops.get(id);
      if (!op || rows.has(id)) continue;
      // Ids are UUIDv7: newer sorts higher. Find the first row that is older.
      let index = ids.findIndex((other) => other < id);
      if (index < 0) index = ids.length;
      const row = createRow(op);
      rows.set(id, row);
      const before = ids[index] ? rows.get(ids[index])?.tr ?? null : null;
      tbody.insertBefore(row.tr, before);
      ids.splice(index, 0, id);
    }
    showPaging();
  }

  /** @param {Operation} op */
  function createRow(op) {
    const badge = statusBadge(op.status);
    const progress = progressBar(`progress of ${op.id}`);
    const message = cell('col-message');
    const tr = gridRow(op.id,
      cell('col-status', {}, badge),
      cell('col-kind', { text: op.kind }),
      me.admin ? cell('col-owner', { text: op.owner }) : null,
      cell('col-progress', {}, progress.element),
      message,
      cell('col-created', { text: timeText(op.created_at), attrs: { title: op.created_at } }),
      cell('col-id', {}, h('a', { attrs: { href: operationHref(op.id), title: op.id }, text: shortId(op.id) })));
    const row = { tr, badge, progress, message };
    updateRow(row, op);
    return row;
  }

  /**
   * @param {Row} row
   * @param {Operation} op
   */
  function updateRow(row, op) {
    stats.rowUpdates += 1;
    updateStatusBadge(row.badge, op.status);
    updateProgressBar(row.progress, op.progress?.percent ?? 0, op.status);
    const text = summaryMessage(op);
    setText(row.message, text);
    if (row.message.title !== text) row.message.title = text;
  }

  function showPaging() {
    const first = history.length === 0;
    newerButton.disabled = first;
    olderButton.disabled = nextCursor === null;
    const count = ids.length;
    setText(info, `Page ${history.length + 1} · ${count.toLocaleString()} operation${count === 1 ? '' : 's'}`);
    empty.hidden = count > 0;
    table.hidden = count === 0;
    if (count === 0) {
      const filtered = filter.status || filter.kind || filter.owner;
      replace(empty, filtered ? 'No operation matches these filters.' : 'No operations yet. ',
        filtered ? null : h('a', { attrs: { href: '#/start' }, text: 'Start one.' }));
    }
  }

  /** @param {string | null} message */
  function showProblem(message) {
    problem.hidden = message === null;
    if (message !== null) {
      replace(problem, `Could not read the operations: ${message} `,
        h('button', { className: 'secondary', attrs: { type: 'button' }, text: 'Retry', on: { click: () => load() } }));
    }
  }

  async function fillKinds() {
    /** @type {Array<{kind: string}>} */
    let kinds = [];
    try {
      kinds = await ctx.kinds();
    } catch {
      // The filter still works with the kind typed in the URL.
    }
    const names = new Set(kinds.map((kind) => kind.kind));
    if (filter.kind) names.add(filter.kind);
    for (const name of [...names].sort()) kindSelect.append(h('option', { attrs: { value: name }, text: name }));
    kindSelect.value = filter.kind;
  }

  // --- filters and pages ---

  function showFilter() {
    statusSelect.value = filter.status;
    kindSelect.value = filter.kind;
    if (ownerInput) ownerInput.value = filter.owner;
    limitSelect.value = String(filter.limit);
  }

  function applyFilters() {
    const next = new URLSearchParams();
    if (statusSelect.value) next.set('status', statusSelect.value);
    if (kindSelect.value) next.set('kind', kindSelect.value);
    if (ownerInput?.value.trim()) next.set('owner', ownerInput.value.trim());
    if (limitSelect.value !== String(PAGE_SIZES[0])) next.set('limit', limitSelect.value);
    const query = next.toString();
    ctx.navigate(query ? `#/operations?${query}` : '#/operations', { replace: true });
  }

  function older() {
    if (nextCursor === null) return;
    history.push(cursor);
    cursor = nextCursor;
    load();
    window.scrollTo(0, 0);
  }

  function newer() {
    if (history.length === 0) return;
    cursor = history.pop() ?? null;
    load();
  }

  return {
    /** @param {URLSearchParams} next */
    update(next) {
      Object.assign(filter, readFilter(next));
      placedLive.clear();
      showFilter();
      cursor = null;
      history = [];
      load();
    },
    unmount() {
      unmounted = true;
      batcher.stop();
      document.removeEventListener('visibilitychange', onVisible);
      feed.close();
      follows.clear();
    },
  };
}

/** @param {URLSearchParams} params */
function readFilter(params) {
  const status = params.get('status') ?? '';
  const limit = Number(params.get('limit'));
  return {
    status: STATUSES.includes(status) ? status : '',
    kind: params.get('kind') ?? '',
    owner: params.get('owner') ?? '',
    limit: PAGE_SIZES.includes(limit) ? limit : PAGE_SIZES[0],
  };
}
