// Headless Chromium (Debian's package) driven by playwright-core, with the
// flags this machine's closed network needs, and helpers for the dashboard:
// sign in, wait for what the page shows, save screenshots.

import fs from 'node:fs';
import path from 'node:path';

import { chromium } from 'playwright-core';

import { ARTIFACTS } from './platform.mjs';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/**
 * A fresh browser context and page, recording what must never happen:
 * dialogs (an injected alert would open one), page errors and console errors.
 * @param {import('playwright-core').Browser} browser
 * @param {{token?: string}} [options] a token to put in sessionStorage before the page loads
 */
export async function openPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const record = { dialogs: [], errors: [], console: [] };
  page.on('dialog', (dialog) => {
    record.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (err) => record.errors.push(err.message));
  page.on('console', (message) => {
    if (message.type() === 'error') record.console.push(message.text());
  });
  if (options.token) {
    await context.addInitScript((token) => {
      if (!sessionStorage.getItem('longrun.token')) sessionStorage.setItem('longrun.token', token);
    }, options.token);
  }
  return { context, page, record };
}

/**
 * Waits until the page shows `text` (a string or RegExp) in the element
 * `selector`, re-checked at every animation frame.
 * @param {import('playwright-core').Page} page
 * @param {string} selector
 * @param {string | RegExp} text
 * @param {number} [timeout]
 */
export async function waitForText(page, selector, text, timeout = 20_000) {
  const pattern = text instanceof RegExp ? { source: text.source, flags: text.flags } : null;
  try {
    await page.waitForFunction(({ selector, text, pattern }) => {
      const element = document.querySelector(selector);
      if (!element) return false;
      const content = element.textContent ?? '';
      return pattern ? new RegExp(pattern.source, pattern.flags).test(content) : content.includes(text);
    }, { selector, text: typeof text === 'string' ? text : '', pattern }, { timeout, polling: 'raf' });
  } catch (err) {
    const actual = await page.locator(selector).first().textContent({ timeout: 1000 }).catch(() => '(no such element)');
    throw new Error(`${selector} never showed ${text} (it shows ${JSON.stringify(actual)}): ${err.message}`);
  }
}

/**
 * Saves a screenshot under tests/artifacts/browser/ (not committed).
 * @param {import('playwright-core').Page} page
 * @param {string} name
 * @param {{fullPage?: boolean}} [options] the whole page (default) or what the window shows
 */
export async function screenshot(page, name, options = {}) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: options.fullPage ?? true });
  return file;
}
