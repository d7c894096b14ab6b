// @ts-check
/**
 * A form generated from a kind's JSON Schema (`input_schema` of
 * `GET /v1/kinds`), and the placing of a 422's field errors next to the
 * fields they name.
 *
 * Each top-level property becomes a field: numbers and strings are text
 * inputs, enums and booleans are selects (with "default" left unset),
 * arrays of numbers or strings are comma-separated lists, and anything
 * more structured (objects, arrays of objects) is a JSON text area. Empty
 * fields are left out, so the kind's defaults apply. The form does no
 * validation of its own beyond reading what was typed: the api's schema
 * check is the one truth, and its errors are shown where they belong.
 */

import { h, replace, setText } from './dom.js';

/**
 * @typedef {{path: string, message: string}} FieldError
 * @typedef {'integer' | 'number' | 'string' | 'text' | 'boolean' | 'enum' | 'list' | 'json'} Widget
 * @typedef {{name: string, schema: any, widget: Widget, required: boolean,
 *   control: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, error: HTMLElement, wrapper: HTMLElement}} Field
 */

/**
 * @param {any} schema the kind's input schema
 * @param {string} idPrefix makes element ids unique on the page
 */
export function buildSchemaForm(schema, idPrefix) {
  const properties = schema && typeof schema.properties === 'object' && schema.properties ? schema.properties : {};
  const required = new Set(Array.isArray(schema?.required) ? schema.required : []);
  const names = Object.keys(properties).sort((a, b) => Number(required.has(b)) - Number(required.has(a)) || a.localeCompare(b));
  /** @type {Map<string, Field>} */
  const fields = new Map();
  const element = h('div', { className: 'schema-fields' });
  for (const name of names) {
    const field = buildField(name, properties[name] ?? {}, required.has(name), idPrefix);
    fields.set(name, field);
    element.append(field.wrapper);
  }
  if (names.length === 0) {
    element.append(h('p', { className: 'muted', text: 'This kind takes no fields; its input is {}.' }));
  }
  const formErrors = h('ul', { className: 'form-errors', attrs: { role: 'alert', 'aria-live': 'polite' } });

  return {
    element,
    formErrors,
    /**
     * The input object, or the fields that could not be read.
     * @returns {{input: Record<string, unknown>, problems: FieldError[]}}
     */
    read() {
      /** @type {Record<string, unknown>} */
      const input = {};
      /** @type {FieldError[]} */
      const problems = [];
      for (const field of fields.values()) {
        const raw = field.control.value;
        if (raw.trim() === '') continue;
        try {
          input[field.name] = convert(field, raw);
        } catch (err) {
          problems.push({ path: `/${field.name}`, message: err instanceof Error ? err.message : String(err) });
        }
      }
      return { input, problems };
    },
    /**
     * Fills the fields from an input object (switching back from JSON).
     * @param {Record<string, unknown>} input
     */
    fill(input) {
      for (const field of fields.values()) {
        const value = input[field.name];
        const select = field.widget === 'enum' || field.widget === 'boolean';
        field.control.value = value === undefined ? '' : select ? JSON.stringify(value) : display(field, value);
      }
    },
    /**
     * Shows each error next to its field; the others (and those of the
     * whole input, path "") above the form. Returns how many were placed.
     * @param {FieldError[]} errors
     * @param {string} [summary]
     */
    showErrors(errors, summary) {
      this.clearErrors();
      /** @type {Map<Field, string[]>} */
      const byField = new Map();
      /** @type {string[]} */
      const general = [];
      for (const error of errors) {
        const [first, ...rest] = pointerSegments(error.path);
        const field = first !== undefined ? fields.get(first) : undefined;
        if (!field) {
          general.push(error.path ? `${error.path}: ${error.message}` : error.message);
          continue;
        }
        const where = rest.length > 0 ? `at ${error.path}: ` : '';
        byField.set(field, [...(byField.get(field) ?? []), where + error.message]);
      }
      for (const [field, messages] of byField) {
        setText(field.error, messages.join('\n'));
        field.error.hidden = false;
        field.control.setAttribute('aria-invalid', 'true');
        field.wrapper.classList.add('invalid');
      }
      const lines = summary ? [summary, ...general] : general;
      replace(formErrors, lines.map((line) => h('li', { text: line })));
      formErrors.hidden = lines.length === 0;
      const firstInvalid = [...byField.keys()][0];
      if (firstInvalid) firstInvalid.control.focus();
      return byField.size;
    },
    clearErrors() {
      for (const field of fields.values()) {
        setText(field.error, '');
        field.error.hidden = true;
        field.control.removeAttribute('aria-invalid');
        field.wrapper.classList.remove('invalid');
      }
      replace(formErrors);
      formErrors.hidden = true;
    },
  };
}

/**
 * @param {string} name
 * @param {any} schema
 * @param {boolean} required
 * @param {string} idPrefix
 * @returns {Field}
 */
function buildField(name, schema, required, idPrefix) {
  const widget = widgetFor(schema);
  const id = `${idPrefix}-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const describedBy = `${hintId} ${errorId}`;
  const common = { id, name, 'aria-describedby': describedBy, 'aria-required': required ? 'true' : null };
  /** @type {HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement} */
  let control;
  switch (widget) {
    case 'enum':
    case 'boolean': {
      const options = widget === 'boolean' ? [true, false] : schema.enum;
      const defaultLabel = schema.default !== undefined ? `default (${display({ widget, schema }, schema.default)})` : 'not set';
      control = h('select', { attrs: common },
        h('option', { attrs: { value: '' }, text: defaultLabel }),
        options.map((/** @type {unknown} */ option) => h('option', { attrs: { value: JSON.stringify(option) }, text: display({ widget, schema }, option) })));
      break;
    }
    case 'text':
    case 'json':
      control = h('textarea', {
        attrs: { ...common, rows: widget === 'json' ? 6 : 4, spellcheck: 'false', placeholder: placeholder(widget, schema) },
      });
      break;
    default:
      control = h('input', {
        attrs: {
          ...common,
          type: 'text',
          inputmode: widget === 'integer' ? 'numeric' : widget === 'number' ? 'decimal' : null,
          autocomplete: 'off',
          spellcheck: 'false',
          placeholder: placeholder(widget, schema),
        },
      });
  }
  const label = h('label', { attrs: { for: id } },
    h('span', { className: 'field-name', text: name }),
    required ? h('span', { className: 'required', attrs: { title: 'required' }, text: ' *' }) : null);
  const hint = h('div', { className: 'hint', attrs: { id: hintId }, text: hintText(widget, schema) });
  const error = h('div', { className: 'field-error', attrs: { id: errorId, role: 'alert' }, props: { hidden: true } });
  const wrapper = h('div', { className: `field field-${widget}`, data: { field: name } }, label, control, hint, error);
  return { name, schema, widget, required, control, error, wrapper };
}

/**
 * @param {any} schema
 * @returns {Widget}
 */
function widgetFor(schema) {
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return 'enum';
  const type = Array.isArray(schema.type) ? schema.type.find((/** @type {string} */ t) => t !== 'null') : schema.type;
  switch (type) {
    case 'integer':
      return 'integer';
    case 'number':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'string':
      return typeof schema.maxLength === 'number' && schema.maxLength <= 256 ? 'string' : 'text';
    case 'array': {
      const itemType = schema.items?.type;
      return ['integer', 'number', 'string'].includes(itemType) && !schema.items?.enum ? 'list' : 'json';
    }
    default:
      return 'json';
  }
}

/**
 * @param {Widget} widget
 * @param {any} schema
 */
function placeholder(widget, schema) {
  if (schema.default !== undefined) return `default: ${display({ widget, schema }, schema.default)}`;
  if (widget === 'list') return 'comma-separated, e.g. 1, 2, 3';
  if (widget === 'json') return 'JSON';
  return '';
}

/**
 * @param {Widget} widget
 * @param {any} schema
 */
function hintText(widget, schema) {
  const parts = [];
  if (typeof schema.description === 'string') parts.push(schema.description);
  const min = schema.minimum ?? schema.exclusiveMinimum;
  const max = schema.maximum ?? schema.exclusiveMaximum;
  if (min !== undefined && max !== undefined) parts.push(`${min} to ${max}`);
  else if (min !== undefined) parts.push(`at least ${min}`);
  else if (max !== undefined) parts.push(`at most ${max}`);
  if (typeof schema.maxLength === 'number') parts.push(`up to ${schema.maxLength} characters`);
  if (widget === 'list') parts.push(`a comma-separated list of ${schema.items?.type ?? 'values'}s`);
  if (widget === 'json') parts.push('JSON');
  return parts.join(' · ');
}

/**
 * What a field's text becomes in the input. Numbers that do not parse are
 * sent as typed, so the api's message about them is shown.
 * @param {Field} field
 * @param {string} raw
 */
function convert(field, raw) {
  const text = raw.trim();
  switch (field.widget) {
    case 'integer':
    case 'number':
      return numberOrText(text);
    case 'boolean':
    case 'enum':
      return JSON.parse(raw);
    case 'list': {
      const items = text.split(',').map((item) => item.trim()).filter((item) => item !== '');
      return field.schema.items?.type === 'string' ? items : items.map(numberOrText);
    }
    case 'json':
      try {
        return JSON.parse(text);
      } catch (err) {
        throw new Error(`not valid JSON (${err instanceof Error ? err.message : err})`);
      }
    default:
      return raw;
  }
}

/** @param {string} text */
function numberOrText(text) {
  const value = Number(text);
  return text !== '' && Number.isFinite(value) ? value : text;
}

/**
 * @param {{widget: Widget, schema: any}} field
 * @param {unknown} value
 */
function display(field, value) {
  switch (field.widget) {
    case 'list':
      return Array.isArray(value) ? value.join(', ') : JSON.stringify(value);
    case 'json':
      return JSON.stringify(value, null, 2);
    case 'boolean':
    case 'enum':
      return typeof value === 'string' ? value : JSON.stringify(value);
    default:
      return typeof value === 'string' ? value : JSON.stringify(value);
  }
}

/**
 * The segments of a JSON Pointer ("/columns/0/name" → ["columns", "0", "name"]).
 * @param {string} pointer
 */
export function pointerSegments(pointer) {
  if (!pointer) return [];
  return pointer.replace(/^\//, '').split('/').map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
}
