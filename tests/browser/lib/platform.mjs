// A real longrun platform for the browser tests: a private redis-server and
// `longrun dev` (api, worker, gateway) on free ports, started and stopped by
// the test, plus a small HTTP client for arranging state.

import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts', 'browser');
const BIN = process.env.LONGRUN_BIN ?? path.join(ROOT, 'target', 'debug', 'longrun');
const SECRET = 'browser-tests-secret-0123456789abcdef';
const run = promisify(execFile);

/** A port nobody listens on right now. */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = /** @type {net.AddressInfo} */ (server.address());
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves when `check` returns true; polls for state that has no event (a port opening). */
async function until(check, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

async function answers(url) {
  const response = await fetch(url);
  return response.ok;
}

export class Platform {
  /** @param {{workerConcurrency?: number, name?: string}} options */
  static async start(options = {}) {
    const platform = new Platform(options);
    await platform.startRedis();
    platform.apiPort = await freePort();
    platform.wsPort = await freePort();
    await platform.startDev();
    return platform;
  }

  constructor(options) {
    this.options = options;
    this.name = options.name ?? 'platform';
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    this.log = fs.createWriteStream(path.join(ARTIFACTS, `${this.name}.log`), { flags: 'w' });
  }

  get url() {
    return `http://127.0.0.1:${this.apiPort}`;
  }

  async startRedis() {
    this.dir = await mkdtemp(path.join(os.tmpdir(), 'longrun-browser-'));
    this.redisPort = await freePort();
    this.redis = spawn('redis-server', [
      '--port', String(this.redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--loglevel', 'warning',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.redis.stdout.pipe(this.log, { end: false });
    this.redis.stderr.pipe(this.log, { end: false });
    await until(() => new Promise((resolve) => {
      const socket = net.connect(this.redisPort, '127.0.0.1', () => {
        socket.write('PING\r\n');
      });
      socket.once('data', (data) => {
        socket.destroy();
        resolve(String(data).startsWith('+PONG'));
      });
      socket.once('error', () => resolve(false));
    }), 'redis-server');
  }

  async startDev() {
    this.dev = spawn(BIN, ['dev', '--quiet'], {
      env: {
        ...process.env,
        REDIS_URL: `redis://127.0.0.1:${this.redisPort}/`,
        LONGRUN_JWT_SECRET: SECRET,
        LONGRUN_API_ADDR: `127.0.0.1:${this.apiPort}`,
        LONGRUN_WS_ADDR: `127.0.0.1:${this.wsPort}`,
        LONGRUN_WORKER_CONCURRENCY: String(this.options.workerConcurrency ?? 64),
        LONGRUN_SHUTDOWN_GRACE_MS: '1000',
        RUST_LOG: process.env.RUST_LOG ?? 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.dev.stdout.pipe(this.log, { end: false });
    this.dev.stderr.pipe(this.log, { end: false });
    const exited = once(this.dev, 'exit').then(([code]) => {
      throw new Error(`longrun dev exited early with ${code}; see ${this.log.path}`);
    });
    exited.catch(() => {});
    await Promise.race([
      until(async () => (await answers(`${this.url}/readyz`)) && answers(`http://127.0.0.1:${this.wsPort}/healthz`), 'longrun dev'),
      exited,
    ]);
  }

  /** Stops `longrun dev` (SIGTERM, as an operator would), leaving Redis. */
  async stopDev() {
    const dev = this.dev;
    this.dev = null;
    if (!dev || dev.exitCode !== null) return;
    const exited = once(dev, 'exit');
    dev.kill('SIGTERM');
    const timer = setTimeout(() => dev.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  async stop() {
    await this.stopDev();
    if (this.redis && this.redis.exitCode === null) {
      const exited = once(this.redis, 'exit');
      this.redis.kill('SIGTERM');
      await exited;
    }
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
    this.log.end();
  }

  /**
   * A token for `sub`, minted by `longrun token`.
   * @param {string} sub
   * @param {string[]} [roles]
   */
  async token(sub, roles = []) {
    const args = ['token', '--sub', sub, ...roles.flatMap((role) => ['--roles', role])];
    const { stdout } = await run(BIN, args, { env: { ...process.env, LONGRUN_JWT_SECRET: SECRET } });
    return stdout.trim();
  }

  /** @param {string} token */
  client(token) {
    return new ApiClient(this.url, token);
  }
}

/** Just enough of the HTTP API to arrange and check what the browser shows. */
export class ApiClient {
  constructor(base, token) {
    this.base = base;
    this.token = token;
  }

  async request(method, path, body) {
    const response = await fetch(`${this.base}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const json = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = new Error(`${method} ${path}: ${response.status} ${text}`);
      error.status = response.status;
      throw error;
    }
    return json;
  }

  /** Starts an operation; its resource. */
  start(kind, input) {
    const [module, operation] = kind.split('.');
    return this.request('POST', `/v1/${module}/${operation}`, input);
  }

  get(id) {
    return this.request('GET', `/v1/operations/${id}`);
  }

  wait(id, timeoutMs = 30_000) {
    return this.request('GET', `/v1/operations/${id}/wait?timeout_ms=${timeoutMs}`);
  }

  cancel(id) {
    return this.request('POST', `/v1/operations/${id}/cancel`);
  }

  async list(query = '') {
    return (await this.request('GET', `/v1/operations${query}`)).operations;
  }
}
