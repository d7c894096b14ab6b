// @ts-check
/**
 * The signed-in token, kept in sessionStorage (so it lives as long as the
 * tab and is never shared with other tabs or written to disk by us), and
 * the claims the page shows: who, which roles, until when.
 */

const TOKEN_KEY = 'longrun.token';
const WS_URL_KEY = 'longrun.wsUrl';

/** @typedef {{sub: string, roles: string[], exp: number | null, admin: boolean}} Claims */
/** @typedef {{token: string, claims: Claims}} Session */

/**
 * Reads a JWT's claims without checking its signature (the api does that);
 * throws a readable error when the text is not a JWT.
 * @param {string} token
 * @returns {Claims}
 */
export function decodeClaims(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('This is not a token: a JWT has three parts separated by dots.');
  let payload;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), '='));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    payload = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error('This is not a token: its claims are not readable JSON.');
  }
  if (!payload || typeof payload.sub !== 'string' || payload.sub === '') {
    throw new Error('This token has no `sub` claim (the owner of operations).');
  }
  const roles = Array.isArray(payload.roles) ? payload.roles.filter((/** @type {unknown} */ r) => typeof r === 'string') : [];
  const exp = typeof payload.exp === 'number' ? payload.exp : null;
  return { sub: payload.sub, roles, exp, admin: roles.includes('admin') };
}

/** @returns {Session | null} */
export function loadSession() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  try {
    return { token, claims: decodeClaims(token) };
  } catch {
    sessionStorage.removeItem(TOKEN_KEY);
    return null;
  }
}

/** @param {string} token */
export function saveToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearSession() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Seconds until the token expires (negative once expired); null without `exp`. @param {Claims} claims */
export function secondsLeft(claims) {
  return claims.exp === null ? null : claims.exp - Date.now() / 1000;
}

/** @returns {string | null} */
export function loadWsUrlOverride() {
  return sessionStorage.getItem(WS_URL_KEY);
}

/** @param {string | null} url */
export function saveWsUrlOverride(url) {
  if (url) sessionStorage.setItem(WS_URL_KEY, url);
  else sessionStorage.removeItem(WS_URL_KEY);
}
