// @ts-check
/**
 * The dashboard's shell: configuration, session, header, routing between
 * views, and what views share (the api client, live feeds, toasts and the
 * confirmation dialog).
 *
 * Routes (in the URL's fragment, so the server serves one page):
 *   #/operations[?status=&kind=&owner=&limit=]   the list
 *   #/operations/ID                              one operation
 *   #/start[/KIND]                               the start form
 *   #/signin
 */

import { createApi } from './api.js';
import { h, replace, setText } from './dom.js';
import { Feed } from './live.js';
import { clearSession, loadSession, loadWsUrlOverride, saveToken, secondsLeft } from './session.js';
import { mountList } from './views/list.js';
import { mountOperation } from './views/operation.js';
import { mountSignIn } from './views/signin.js';
import { mountStart } from './views/start.js';

/**
 * @typedef {{
 *   api: import('./api.js').Api,
 *   session: import('./session.js').Session,
 *   openFeed: () => Feed,
 *   navigate: (hash: string, options?: {replace?: boolean}) => void,
 *   kinds: () => Promise<Array<{kind: string, description?: string, input_schema?: any, defaults?: any}>>,
 *   toast: (text: string, kind?: 'info' | 'error') => void,
 *   confirm: (options: {title: string, body: string, confirmLabel: string, cancelLabel: string, danger?: boolean}) => Promise<boolean>,
 * }} Context
 * @typedef {{unmount: () => void, update?: (params: URLSearchParams) => void}} View
 * @typedef {{name: 'list' | 'operation' | 'start' | 'signin', key: string, params: URLSearchParams}} Route
 */

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const header = /** @type {HTMLElement} */ (document.getElementById('topbar'));
const toasts = /** @type {HTMLElement} */ (document.getElementById('toasts'));

/** @type {{ws_url?: string | null, ws_port?: number | null}} */
let config = {};
/** @type {{route: Route, view: View} | null} */
let current = null;
/** @type {Context | null} */
let context = null;
/** @type {string | null} */
let notice = null;
/** @type {ReturnType<typeof setTimeout> | null} */
let expiryTimer = null;
/** @type {Feed | null} */
let shownFeed = null;

async function boot() {
  try {
    const response = await fetch('config.json', { cache: 'no-store' });
    if (response.ok) config = await response.json();
  } catch {
    // Defaults below.
  }
  window.addEventListener('hashchange', route);
  route();
}

/** The gateway's URL: the user's override, the configured one, or this host on the gateway's port. */
function defaultWsUrl() {
  if (config.ws_url) return config.ws_url;
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
  const port = config.ws_port ?? 8081;
  return `${scheme}://${window.location.hostname}:${port}/v1/ws`;
}

function wsUrl() {
  return loadWsUrlOverride() || defaultWsUrl();
}

/** @returns {Route} */
function parseRoute() {
  const hash = window.location.hash.replace(/^#/, '') || '/operations';
  const [path, query = ''] = hash.split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean).map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  if (parts[0] === 'operations' && parts[1]) return { name: 'operation', key: parts[1], params };
  if (parts[0] === 'start') return { name: 'start', key: parts[1] ?? '', params };
  if (parts[0] === 'signin') return { name: 'signin', key: '', params };
  return { name: 'list', key: '', params };
}

function route() {
  const session = loadSession();
  let next = parseRoute();
  if (!session || (secondsLeft(session.claims) ?? 1) <= 0) {
    if (session) {
      clearSession();
      notice = 'Your token has expired; sign in with a new one.';
    }
    showSignIn();
    return;
  }
  if (next.name === 'signin') {
    navigate('#/operations', { replace: true });
    return;
  }
  if (!context || context.session.token !== session.token) context = makeContext(session);
  drawHeader(session, next);
  if (current && current.route.name === next.name && current.route.key === next.key && current.view.update) {
    current.route = next;
    current.view.update(next.params);
    return;
  }
  current?.view.unmount();
  current = null;
  const ctx = context;
  /** @type {View} */
  let view;
  switch (next.name) {
    case 'operation':
      view = mountOperation(main, ctx, next.key);
      document.title = 'Operation · longrun';
      break;
    case 'start':
      view = mountStart(main, ctx, next.key || null);
      document.title = 'Start · longrun';
      break;
    default:
      next = { ...next, name: 'list' };
      view = mountList(main, ctx, next.params);
      document.title = 'Operations · longrun';
  }
  current = { route: next, view };
  main.focus({ preventScroll: true });
}

function showSignIn() {
  current?.view.unmount();
  current = null;
  context = null;
  header.hidden = true;
  replace(header);
  document.title = 'Sign in · longrun';
  const view = mountSignIn(main, {
    defaultWsUrl: defaultWsUrl(),
    notice,
    onSignedIn(token) {
      notice = null;
      saveToken(token);
      const target = parseRoute();
      if (target.name === 'signin') navigate('#/operations', { replace: true });
      else route();
    },
  });
  current = { route: { name: 'signin', key: '', params: new URLSearchParams() }, view };
}

/** @param {string} text */
function signOut(text) {
  notice = text;
  clearSession();
  if (expiryTimer) clearTimeout(expiryTimer);
  expiryTimer = null;
  showSignIn();
}

/**
 * @param {import('./session.js').Session} session
 * @returns {Context}
 */
function makeContext(session) {
  const api = createApi(session.token, (detail) => signOut(`The api refused your token: ${detail}`));
  /** @type {Promise<any[]> | null} */
  let kinds = null;
  if (expiryTimer) clearTimeout(expiryTimer);
  const left = secondsLeft(session.claims);
  if (left !== null) {
    // setTimeout takes at most ~24.8 days.
    expiryTimer = setTimeout(() => signOut('Your token has expired; sign in with a new one.'), Math.min(left * 1000, 2 ** 31 - 1));
  }
  return {
    api,
    session,
    openFeed() {
      const feed = new Feed({
        url: wsUrl(),
        token: session.token,
        onStatus: (status) => {
          if (shownFeed === feed) showConnection(status);
        },
        onUnauthorized: (reason) => signOut(`The gateway refused your token: ${reason}`),
      });
      shownFeed = feed;
      return feed.start();
    },
    navigate,
    kinds() {
      kinds ??= api.get('/v1/kinds').then((body) => (Array.isArray(body?.kinds) ? body.kinds : []), (err) => {
        kinds = null;
        throw err;
      });
      return kinds;
    },
    toast,
    confirm,
  };
}

/**
 * @param {string} hash
 * @param {{replace?: boolean}} [options]
 */
function navigate(hash, options = {}) {
  if (window.location.hash === hash) {
    route();
    return;
  }
  if (options.replace) {
    window.history.replaceState(null, '', hash);
    route();
  } else {
    window.location.hash = hash;
  }
}

/**
 * @param {import('./session.js').Session} session
 * @param {Route} next
 */
function drawHeader(session, next) {
  header.hidden = false;
  if (!header.firstChild) {
    const signOutButton = h('button', { className: 'link', attrs: { type: 'button', id: 'signout' }, text: 'Sign out', on: { click: () => signOut('You signed out.') } });
    replace(header,
      h('a', { className: 'brand', attrs: { href: '#/operations' } }, h('img', { attrs: { src: 'favicon.svg', alt: '', width: 20, height: 20 } }), 'longrun'),
      h('nav', { className: 'main-nav' },
        h('a', { attrs: { href: '#/operations', id: 'nav-operations' }, text: 'Operations' }),
        h('a', { attrs: { href: '#/start', id: 'nav-start' }, text: 'Start' })),
      h('span', { className: 'spacer' }),
      h('span', { className: 'connection', attrs: { id: 'connection', role: 'status', 'aria-live': 'polite' }, props: { hidden: true } }),
      h('span', { className: 'user', attrs: { id: 'user' } },
        h('span', { className: 'who', attrs: { id: 'user-sub' }, text: session.claims.sub }),
        session.claims.admin ? h('span', { className: 'role', text: 'admin' }) : null),
      signOutButton);
  }
  for (const link of header.querySelectorAll('.main-nav a')) {
    const active = (link.id === 'nav-operations' && (next.name === 'list' || next.name === 'operation'))
      || (link.id === 'nav-start' && next.name === 'start');
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (next.name === 'start') showConnection(null);
}

/** @param {import('./live.js').FeedStatus | null} status */
function showConnection(status) {
  const element = document.getElementById('connection');
  if (!element) return;
  if (!status || status.state === 'closed') {
    element.hidden = true;
    return;
  }
  element.hidden = false;
  element.dataset.state = status.state;
  const text = status.state === 'live' ? 'Live'
    : status.state === 'connecting' ? 'Connecting…'
      : `Reconnecting…${status.attempt > 1 ? ` (attempt ${status.attempt})` : ''}`;
  setText(element, text);
  element.title = status.state === 'reconnecting'
    ? `${status.reason || 'The connection was lost'}; retrying${status.retryInMs ? ` in ${(status.retryInMs / 1000).toFixed(1)} s` : ''}. Updates resume where they stopped.`
    : status.state === 'live' ? 'Updates arrive as they happen.' : '';
}

/**
 * @param {string} text
 * @param {'info' | 'error'} [kind]
 */
function toast(text, kind = 'info') {
  const item = h('div', { className: `toast ${kind}`, attrs: { role: kind === 'error' ? 'alert' : 'status' }, text });
  toasts.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
}

/**
 * A modal confirmation (an in-page <dialog>, not window.confirm).
 * @param {{title: string, body: string, confirmLabel: string, cancelLabel: string, danger?: boolean}} options
 * @returns {Promise<boolean>}
 */
function confirm(options) {
  return new Promise((resolve) => {
    const yes = h('button', { className: options.danger ? 'danger' : '', attrs: { type: 'button', value: 'yes', id: 'confirm-yes' }, text: options.confirmLabel });
    const no = h('button', { className: 'secondary', attrs: { type: 'button', value: 'no', id: 'confirm-no' }, text: options.cancelLabel });
    const dialog = h('dialog', { className: 'confirm', attrs: { 'aria-labelledby': 'confirm-title' } },
      h('h2', { attrs: { id: 'confirm-title' }, text: options.title }),
      h('p', { text: options.body }),
      h('div', { className: 'form-actions' }, no, yes));
    let answered = false;
    /** @param {boolean} answer */
    const finish = (answer) => {
      if (answered) return;
      answered = true;
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    yes.addEventListener('click', () => finish(true));
    no.addEventListener('click', () => finish(false));
    dialog.addEventListener('close', () => finish(false));
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}

boot();
