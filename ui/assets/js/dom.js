// @ts-check
/**
 * Building DOM nodes safely. Everything the dashboard shows goes through
 * these helpers: text is always set with textContent or text nodes, never
 * parsed as HTML, so an operation's message, result or owner can never
 * inject markup or script. (No script of the page parses strings as HTML;
 * a unit test of the ui crate keeps it so.)
 */

/**
 * @typedef {Node | string | number | null | undefined | false} Child
 * @typedef {{
 *   className?: string,
 *   text?: string,
 *   attrs?: Record<string, string | number | boolean | null | undefined>,
 *   data?: Record<string, string>,
 *   on?: Record<string, (event: any) => void>,
 *   props?: Record<string, any>,
 * }} Props
 */

/**
 * Creates an element with attributes, listeners and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props} [props]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  if (props.className) element.className = props.className;
  if (props.text !== undefined) element.textContent = props.text;
  for (const [name, value] of Object.entries(props.attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const [name, value] of Object.entries(props.data ?? {})) {
    element.dataset[name] = value;
  }
  for (const [name, listener] of Object.entries(props.on ?? {})) {
    element.addEventListener(name, listener);
  }
  for (const [name, value] of Object.entries(props.props ?? {})) {
    /** @type {any} */ (element)[name] = value;
  }
  append(element, children);
  return element;
}

/**
 * Appends children: nodes as they are, strings and numbers as text.
 * @param {Node} parent
 * @param {(Child | Child[])[]} children
 */
export function append(parent, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

/**
 * Sets an element's text only when it changed (cheap for live updates).
 * @param {Element} element
 * @param {string} text
 */
export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/**
 * Replaces an element's children.
 * @param {Element} element
 * @param {...(Child | Child[])} children
 */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}
