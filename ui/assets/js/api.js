// @ts-check
/**
 * The HTTP API client: bearer token on every request, problem+json errors
 * turned into {@link ApiError}s (with the field errors of a 422), and a
 * refused token reported once so the page can sign out.
 */

/** @typedef {{path: string, message: string}} FieldError */

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the api could not be reached
   * @param {string} code the problem's code (`not_found`, `invalid_input`, …) or `network`
   * @param {string} detail what happened, for people
   * @param {FieldError[]} [errors] input validation errors
   */
  constructor(status, code, detail, errors = []) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.errors = errors;
  }
}

/**
 * @typedef {Record<string, string | number | boolean | null | undefined>} Query
 * @typedef {{
 *   get: (path: string, query?: Query) => Promise<any>,
 *   post: (path: string, body?: unknown, options?: {query?: Query, headers?: Record<string, string>}) => Promise<any>,
 *   del: (path: string) => Promise<any>,
 * }} Api
 */

/**
 * @param {string} token
 * @param {(detail: string) => void} onUnauthorized called when the api refuses the token
 * @returns {Api}
 */
export function createApi(token, onUnauthorized) {
  /**
   * @param {string} method
   * @param {string} path
   * @param {{query?: Query, body?: unknown, headers?: Record<string, string>}} [options]
   */
  async function request(method, path, options = {}) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== null && value !== undefined && value !== '') url.searchParams.set(name, String(value));
    }
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json', Authorization: `Bearer ${token}`, ...options.headers };
    /** @type {RequestInit} */
    const init = { method, headers, cache: 'no-store' };
    if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new ApiError(0, 'network', `The api at ${url.origin} could not be reached (${err instanceof Error ? err.message : err}).`);
    }
    const body = await readBody(response);
    if (response.ok) return body;
    const problem = body && typeof body === 'object' ? body : {};
    const detail = typeof problem.detail === 'string' ? problem.detail
      : typeof problem.title === 'string' ? problem.title
        : `${response.status} ${response.statusText}`;
    const errors = Array.isArray(problem.errors) ? problem.errors.filter(isFieldError) : [];
    const error = new ApiError(response.status, typeof problem.code === 'string' ? problem.code : 'http_' + response.status, detail, errors);
    if (response.status === 401) onUnauthorized(detail);
    throw error;
  }

  return {
    get: (path, query) => request('GET', path, { query }),
    post: (path, body, options = {}) => request('POST', path, { body, ...options }),
    del: (path) => request('DELETE', path),
  };
}

/** @param {Response} response */
async function readBody(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** @param {any} error */
function isFieldError(error) {
  return error && typeof error.path === 'string' && typeof error.message === 'string';
}

/** @param {string} id */
export function operationPath(id) {
  return `/v1/operations/${encodeURIComponent(id)}`;
}
