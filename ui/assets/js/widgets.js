// @ts-check
/** Small pieces the views share: status badges, progress bars, links, messages. */

import { h, setText } from './dom.js';
import { clampPercent, percentText } from './format.js';

/** @typedef {import('./opstate.js').Operation} Operation */

/** @param {string} status */
export function statusBadge(status) {
  const badge = h('span', { className: 'badge' });
  updateStatusBadge(badge, status);
  return badge;
}

/**
 * @param {HTMLElement} badge
 * @param {string} status
 */
export function updateStatusBadge(badge, status) {
  if (badge.dataset.status !== status) badge.dataset.status = status;
  setText(badge, status);
}

/**
 * A progress bar (an ARIA progressbar) with its percentage beside it.
 * @param {string} [label] accessible name
 */
export function progressBar(label = 'progress') {
  const fill = h('div', { className: 'fill' });
  const bar = h('div', {
    className: 'bar',
    attrs: { role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0, 'aria-label': label },
  }, fill);
  const text = h('span', { className: 'pct', text: '0%' });
  const element = h('div', { className: 'progress' }, bar, text);
  return { element, bar, fill, text };
}

/**
 * @param {ReturnType<typeof progressBar>} progress
 * @param {number} percent
 * @param {string} status
 */
export function updateProgressBar(progress, percent, status) {
  const value = clampPercent(percent);
  const now = String(Math.floor(value * 10) / 10);
  if (progress.bar.getAttribute('aria-valuenow') !== now) {
    progress.bar.setAttribute('aria-valuenow', now);
    progress.fill.style.transform = `scaleX(${value / 100})`;
  }
  if (progress.bar.dataset.status !== status) progress.bar.dataset.status = status;
  setText(progress.text, percentText(value));
}

/**
 * The line that best says where an operation is: its error once failed,
 * why it was cancelled, else its latest progress message.
 * @param {Operation} op
 */
export function summaryMessage(op) {
  if (op.status === 'failed' && op.error?.message) return op.error.message;
  if (op.status === 'cancelled' && op.cancel_reason) return op.cancel_reason;
  return op.progress?.message ?? '';
}

/** @param {string} id */
export function operationHref(id) {
  return `#/operations/${encodeURIComponent(id)}`;
}

/**
 * A table of operations made of grid rows (ARIA table roles), not a
 * <table>: each row lays out and paints on its own, and rows out of view
 * are skipped by the browser (content-visibility), so a thousand rows with
 * a hundred changing stay cheap.
 * @param {{id?: string, label: string, className: string, columns: Array<[string, string]>}} spec columns: [class, title]
 */
export function opsGrid(spec) {
  const body = h('div', { className: 'ops-body', attrs: { role: 'rowgroup' } });
  const element = h('div', { className: `ops ${spec.className}`, attrs: { role: 'table', 'aria-label': spec.label, id: spec.id ?? null } },
    h('div', { className: 'ops-head', attrs: { role: 'rowgroup' } },
      h('div', { className: 'op-row', attrs: { role: 'row' } },
        spec.columns.map(([className, title]) => h('div', { className: `cell ${className}`, attrs: { role: 'columnheader' }, text: title })))),
    body);
  return { element, body };
}

/**
 * @param {string} className
 * @param {import('./dom.js').Props} [props]
 * @param {...import('./dom.js').Child} children
 */
export function cell(className, props = {}, ...children) {
  return h('div', { ...props, className: `cell ${className}`, attrs: { role: 'cell', ...props.attrs } }, ...children);
}

/**
 * @param {string} id
 * @param {...(import('./dom.js').Child | import('./dom.js').Child[])} cells
 */
export function gridRow(id, ...cells) {
  return h('div', { className: 'op-row', attrs: { role: 'row' }, data: { id } }, ...cells);
}
