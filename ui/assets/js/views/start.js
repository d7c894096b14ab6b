// @ts-check
/**
 * Starting an operation: pick a kind, fill the form generated from its
 * input schema (or edit the input as JSON), optionally set run options
 * (attempts, time limits, backoff, failure policy, idempotency key), start.
 * A 422's field errors appear next to their fields; the new operation's
 * page opens on success.
 */

import { ApiError } from '../api.js';
import { h, replace, setText } from '../dom.js';
import { buildSchemaForm } from '../schema-form.js';

/** @typedef {import('../main.js').Context} Context */
/** @typedef {{kind: string, description?: string, input_schema?: any, defaults?: any}} Kind */

/**
 * @param {HTMLElement} root
 * @param {Context} ctx
 * @param {string | null} kindName
 */
export function mountStart(root, ctx, kindName) {
  let unmounted = false;
  const list = h('nav', { className: 'kinds', attrs: { 'aria-label': 'Kinds' } });
  const pane = h('div', { className: 'start-pane' });
  replace(root, h('section', { className: 'view view-start' },
    h('div', { className: 'view-head' }, h('h1', { text: 'Start an operation' })),
    h('div', { className: 'start-grid' }, list, pane)));
  setText(pane, 'Loading kinds…');

  ctx.kinds().then((kinds) => {
    if (unmounted) return;
    replace(list, kinds.map((kind) => h('a', {
      className: kind.kind === kindName ? 'kind current' : 'kind',
      attrs: { href: `#/start/${encodeURIComponent(kind.kind)}`, 'aria-current': kind.kind === kindName ? 'page' : null },
    }, h('strong', { text: kind.kind }), h('span', { className: 'muted', text: firstSentence(kind.description ?? '') }))));
    const kind = kinds.find((k) => k.kind === kindName);
    if (kind) replace(pane, startForm(ctx, kind));
    else if (kindName) replace(pane, h('p', { className: 'banner error', text: `There is no kind ${kindName}. Pick one of the list.` }));
    else replace(pane, h('p', { className: 'muted', text: 'Pick a kind to see its form.' }));
  }, (err) => {
    if (unmounted) return;
    replace(pane, h('p', { className: 'banner error', text: `Could not read the kinds: ${err instanceof Error ? err.message : err}` }));
  });

  return {
    unmount() {
      unmounted = true;
    },
  };
}

/**
 * @param {Context} ctx
 * @param {Kind} kind
 */
function startForm(ctx, kind) {
  const form = buildSchemaForm(kind.input_schema ?? {}, 'field');
  const jsonToggle = h('input', { attrs: { type: 'checkbox', id: 'json-mode' } });
  const jsonArea = h('textarea', { className: 'json-input', attrs: { id: 'json-input', rows: 12, spellcheck: 'false', 'aria-label': 'Input as JSON' }, props: { hidden: true } });
  const options = runOptions(kind);
  const submit = h('button', { attrs: { type: 'submit', id: 'start-submit' }, text: `Start ${kind.kind}` });
  const element = h('form', { className: 'start-form', attrs: { novalidate: true, 'aria-label': `Start ${kind.kind}` } },
    h('h2', { text: kind.kind }),
    kind.description ? h('p', { className: 'muted', text: kind.description }) : null,
    form.formErrors,
    form.element,
    jsonArea,
    h('label', { className: 'inline' }, jsonToggle, ' Edit the input as JSON'),
    options.element,
    h('div', { className: 'form-actions' }, submit));
  form.formErrors.hidden = true;

  jsonToggle.addEventListener('change', () => {
    form.clearErrors();
    if (jsonToggle.checked) {
      const { input } = form.read();
      jsonArea.value = JSON.stringify(input, null, 2);
      jsonArea.hidden = false;
      form.element.hidden = true;
      jsonArea.focus();
      return;
    }
    try {
      const input = JSON.parse(jsonArea.value || '{}');
      form.fill(input && typeof input === 'object' ? input : {});
      jsonArea.hidden = true;
      form.element.hidden = false;
    } catch (err) {
      jsonToggle.checked = true;
      form.showErrors([], `The JSON does not parse: ${err instanceof Error ? err.message : err}`);
    }
  });

  element.addEventListener('submit', async (event) => {
    event.preventDefault();
    form.clearErrors();
    /** @type {unknown} */
    let input;
    if (jsonToggle.checked) {
      try {
        input = JSON.parse(jsonArea.value || '{}');
      } catch (err) {
        form.showErrors([], `The JSON does not parse: ${err instanceof Error ? err.message : err}`);
        return;
      }
    } else {
      const read = form.read();
      if (read.problems.length > 0) {
        form.showErrors(read.problems, 'Some fields could not be read.');
        return;
      }
      input = read.input;
    }
    const [module, operation] = kind.kind.split('.');
    submit.disabled = true;
    setText(submit, 'Starting…');
    try {
      const op = await ctx.api.post(`/v1/${encodeURIComponent(module)}/${encodeURIComponent(operation)}`, input, {
        query: options.query(),
        headers: options.headers(),
      });
      ctx.toast(`Started ${kind.kind}.`);
      ctx.navigate(`#/operations/${encodeURIComponent(op.id)}`);
    } catch (err) {
      if (err instanceof ApiError) {
        const errors = jsonToggle.checked ? err.errors.map((e) => ({ path: '', message: `${e.path || '(input)'}: ${e.message}` })) : err.errors;
        form.showErrors(errors, err.detail);
      } else {
        form.showErrors([], String(err));
      }
    } finally {
      submit.disabled = false;
      setText(submit, `Start ${kind.kind}`);
    }
  });
  return element;
}

/**
 * The query options of a start, with the kind's defaults as placeholders.
 * @param {Kind} kind
 */
function runOptions(kind) {
  const defaults = kind.defaults ?? {};
  /**
   * @param {string} name
   * @param {string} label
   * @param {unknown} placeholder
   */
  const number = (name, label, placeholder) => {
    const input = h('input', { attrs: { type: 'text', inputmode: 'numeric', id: `option-${name}`, name, autocomplete: 'off', placeholder: placeholder === undefined ? '' : `default: ${placeholder}` } });
    return { name, input, element: h('label', {}, label, input) };
  };
  /**
   * @param {string} name
   * @param {string} label
   * @param {string[]} values
   * @param {unknown} fallback
   */
  const choice = (name, label, values, fallback) => {
    const input = h('select', { attrs: { id: `option-${name}`, name } },
      h('option', { attrs: { value: '' }, text: fallback === undefined ? 'default' : `default (${fallback})` }),
      values.map((value) => h('option', { attrs: { value }, text: value })));
    return { name, input, element: h('label', {}, label, input) };
  };
  const fields = [
    number('max_attempts', 'Attempts', defaults.max_attempts),
    number('timeout_ms', 'Per-attempt timeout (ms, 0 = none)', defaults.timeout_ms),
    number('deadline_ms', 'Overall deadline (ms from now, 0 = none)', 0),
    choice('backoff', 'Backoff', ['exponential', 'fixed'], defaults.backoff?.type),
    number('backoff_ms', 'Backoff base (ms)', defaults.backoff?.base_ms),
    number('backoff_max_ms', 'Backoff ceiling (ms)', defaults.backoff?.max_ms),
    choice('failure_policy', 'When a child fails', ['wait_all', 'fail_fast', 'ignore_failures'], 'wait_all'),
  ];
  const key = h('input', { attrs: { type: 'text', id: 'option-idempotency-key', autocomplete: 'off', maxlength: 255, placeholder: 'none' } });
  const element = h('details', { className: 'run-options' },
    h('summary', { text: 'Run options' }),
    h('div', { className: 'options-grid' }, fields.map((field) => field.element), h('label', {}, 'Idempotency-Key', key)));
  return {
    element,
    query() {
      /** @type {Record<string, string>} */
      const query = {};
      for (const field of fields) {
        const value = field.input.value.trim();
        if (value !== '') query[field.name] = value;
      }
      return query;
    },
    headers() {
      /** @type {Record<string, string>} */
      const headers = {};
      if (key.value.trim() !== '') headers['Idempotency-Key'] = key.value.trim();
      return headers;
    },
  };
}

/** @param {string} text */
function firstSentence(text) {
  const end = text.search(/[.;](\s|$)/);
  return end > 0 ? text.slice(0, end + 1) : text;
}
