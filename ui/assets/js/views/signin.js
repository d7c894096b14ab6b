// @ts-check
/**
 * Signing in: paste a bearer token. The page reads its claims (who, which
 * roles, until when), asks the api whether it accepts it, and keeps it in
 * sessionStorage for this tab only.
 */

import { createApi } from '../api.js';
import { h, replace, setText } from '../dom.js';
import { decodeClaims, loadWsUrlOverride, saveWsUrlOverride } from '../session.js';

/**
 * @param {HTMLElement} root
 * @param {{defaultWsUrl: string, notice: string | null, onSignedIn: (token: string) => void}} options
 */
export function mountSignIn(root, options) {
  const tokenInput = h('textarea', {
    attrs: { id: 'token', name: 'token', rows: 5, spellcheck: 'false', autocomplete: 'off', required: true, placeholder: 'eyJhbGciOiJIUzI1NiIs…', 'aria-describedby': 'token-hint signin-error' },
  });
  const wsInput = h('input', {
    attrs: { id: 'ws-url', type: 'url', spellcheck: 'false', autocomplete: 'off', placeholder: options.defaultWsUrl },
  });
  wsInput.value = loadWsUrlOverride() ?? '';
  const error = h('p', { className: 'field-error', attrs: { id: 'signin-error', role: 'alert' }, props: { hidden: true } });
  const submit = h('button', { attrs: { type: 'submit', id: 'signin-submit' }, text: 'Sign in' });
  const form = h('form', { className: 'card signin', attrs: { novalidate: true, 'aria-label': 'Sign in' } },
    h('h1', { text: 'Sign in to longrun' }),
    options.notice ? h('p', { className: 'banner warning', attrs: { role: 'status' }, text: options.notice }) : null,
    h('label', { attrs: { for: 'token' } }, 'Bearer token'),
    tokenInput,
    h('p', { className: 'hint', attrs: { id: 'token-hint' } },
      'A JWT signed with the platform\'s secret. ', h('code', { text: 'longrun dev' }), ' prints one; ',
      h('code', { text: 'longrun token --sub NAME' }), ' mints one. It is kept in this tab only (sessionStorage).'),
    error,
    h('details', {},
      h('summary', { text: 'Connection' }),
      h('label', { attrs: { for: 'ws-url' } }, 'WebSocket URL'),
      wsInput,
      h('p', { className: 'hint', text: 'Leave empty to use the gateway the api names.' })),
    h('div', { className: 'form-actions' }, submit));
  replace(root, h('section', { className: 'view view-signin' }, form));
  tokenInput.focus();

  /** @param {string | null} text */
  const showError = (text) => {
    error.hidden = text === null;
    setText(error, text ?? '');
    if (text) tokenInput.setAttribute('aria-invalid', 'true');
    else tokenInput.removeAttribute('aria-invalid');
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = tokenInput.value.trim().replace(/^Bearer\s+/i, '');
    showError(null);
    if (!token) {
      showError('Paste a token first.');
      return;
    }
    let claims;
    try {
      claims = decodeClaims(token);
    } catch (err) {
      showError(err instanceof Error ? err.message : String(err));
      return;
    }
    if (claims.exp !== null && claims.exp * 1000 < Date.now()) {
      showError('This token has expired; mint a new one.');
      return;
    }
    const wsUrl = wsInput.value.trim();
    if (wsUrl && !/^wss?:\/\/./.test(wsUrl)) {
      showError('The WebSocket URL must start with ws:// or wss://.');
      return;
    }
    submit.disabled = true;
    try {
      let refused = null;
      await createApi(token, (detail) => { refused = detail; }).get('/v1/kinds');
      if (refused) throw new Error(refused);
    } catch (err) {
      showError(`The api refused this token: ${err instanceof Error ? err.message : err}`);
      submit.disabled = false;
      return;
    }
    saveWsUrlOverride(wsUrl || null);
    options.onSignedIn(token);
  });

  return { unmount() {} };
}
