// The stack a Node.js team would build instead of longrun, kept minimal but complete enough
// to serve the same load: an Express API that starts `demo.sleep` jobs on BullMQ (JWT HS256),
// a BullMQ worker that runs them and publishes every event on Redis pub/sub, and a Socket.IO
// gateway (JWT in the handshake) that relays those events to rooms per operation and per owner.
//
//   REDIS_URL=redis://127.0.0.1:PORT JWT_SECRET=... node stack/server.mjs api|worker|ws
//   env: API_ADDR (api, 127.0.0.1:3000), WS_ADDR (ws, 127.0.0.1:3001), WORKER_CONCURRENCY (worker, 100)
//
// Each role is its own process, as deployed. On start it prints one JSON line
// {"ready": ROLE, "pid": ..., "addr": ...}; SIGTERM stops it.
import express from 'express';
import jwt from 'jsonwebtoken';
import { Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { loopbackOnly, sleep, wallMs } from '../lib.mjs';

const role = process.argv[2];
const env = process.env;
const REDIS_URL = loopbackOnly(env.REDIS_URL || 'redis://127.0.0.1:6379');
const SECRET = env.JWT_SECRET;
if (!SECRET) throw new Error('JWT_SECRET is required');
const QUEUE = 'operations', CHANNEL = 'operations:events', RETENTION_S = 86400;
const connection = { url: REDIS_URL, maxRetriesPerRequest: null };
const closers = [];

function listenAddr(addr) { const i = addr.lastIndexOf(':'); return [addr.slice(0, i), Number(addr.slice(i + 1))]; }

/** HS256 only, `sub` and `exp` required: the same rules longrun applies. */
function verify(token) {
  const claims = jwt.verify(token || '', SECRET, { algorithms: ['HS256'] });
  if (!claims.sub || !claims.exp) throw new Error('sub and exp are required');
  return claims;
}

const iso = (ms) => (ms ? new Date(ms).toISOString() : null);
const STATUS = { waiting: 'queued', prioritized: 'queued', delayed: 'queued', active: 'running', completed: 'succeeded', failed: 'failed' };
function resource(job, state) {
  const status = STATUS[state] || 'queued';
  return { id: job.id, kind: job.name, status, done: status === 'succeeded' || status === 'failed',
    progress: job.progress && typeof job.progress === 'object' ? job.progress : { percent: 0, message: null, data: null },
    attempt: job.attemptsMade, max_attempts: job.opts.attempts || 1, result: job.returnvalue ?? null,
    created_at: iso(job.timestamp), started_at: iso(job.processedOn), finished_at: iso(job.finishedOn) };
}

/** Every event goes to one channel with its owner; the gateway routes it to rooms. */
function publisher() {
  const pub = new Redis(REDIS_URL);
  closers.push(() => pub.quit());
  return (job, seq, event, data) => pub.publish(CHANNEL, JSON.stringify({
    type: 'event', operation_id: job.id, owner: job.data.owner, seq, event, at: new Date().toISOString(), data,
  }));
}

function validSleepInput(input) {
  const { duration_ms = 1000, steps = 10, fail_times = 0 } = input ?? {};
  const ranges = [['duration_ms', duration_ms, 0, 3600000], ['steps', steps, 1, 10000], ['fail_times', fail_times, 0, 100]];
  const errors = ranges.filter(([, v, lo, hi]) => !Number.isInteger(v) || v < lo || v > hi)
    .map(([name, , lo, hi]) => ({ path: `/${name}`, message: `an integer from ${lo} to ${hi}` }));
  return { input: { duration_ms, steps, fail_times }, errors };
}

async function api() {
  const queue = new Queue(QUEUE, { connection });
  closers.push(() => queue.close());
  const publish = publisher();
  const app = express();
  app.use(express.json({ limit: '1mb' }));
  const problem = (res, status, code, detail, errors) =>
    res.status(status).type('application/problem+json').json({ type: 'about:blank', title: code, status, detail, code, ...(errors && { errors }) });
  const auth = (req, res, next) => {
    try { req.user = verify((req.get('authorization') || '').replace(/^Bearer /i, '')); next(); }
    catch (err) { problem(res, 401, 'unauthorized', err.message); }
  };
  app.get('/healthz', (_req, res) => res.json({ ok: true }));
  app.get('/v1/operations/:id', auth, async (req, res) => {
    const job = await Job.fromId(queue, req.params.id);
    if (!job || job.data.owner !== req.user.sub) return problem(res, 404, 'not_found', 'no such operation');
    res.json(resource(job, await job.getState()));
  });
  app.post('/v1/:module/:operation', auth, async (req, res) => {
    const kind = `${req.params.module}.${req.params.operation}`;
    if (kind !== 'demo.sleep') return problem(res, 404, 'unknown_kind', `no kind ${kind}`);
    const { input, errors } = validSleepInput(req.body);
    if (errors.length) return problem(res, 422, 'invalid_input', 'the input does not match the schema', errors);
    const id = randomUUID();
    const job = await queue.add(kind, { owner: req.user.sub, input }, {
      jobId: id, attempts: 3, backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { age: RETENTION_S }, removeOnFail: { age: RETENTION_S },
    });
    await publish(job, 1, 'created', { kind });
    res.status(202).location(`/v1/operations/${id}`).json({ id, kind, status: 'queued', done: false });
  });
  app.use((err, _req, res, _next) => problem(res, err.status || 500, err.status === 400 ? 'invalid_json' : 'internal', err.message));
  const [h, p] = listenAddr(env.API_ADDR || '127.0.0.1:3000');
  const server = app.listen(p, h);
  server.keepAliveTimeout = 65000;
  await new Promise((resolve) => server.once('listening', resolve));
  closers.unshift(() => new Promise((resolve) => server.close(resolve)));
  return `${h}:${server.address().port}`;
}

async function worker() {
  const publish = publisher();
  // seq per attempt, kept in memory: created is 1 (published by the api), the worker goes on from 2.
  const seqs = new Map();
  const emit = (job, event, data) => { const seq = (seqs.get(job.id) ?? 1) + 1; seqs.set(job.id, seq); return publish(job, seq, event, data); };
  const w = new Worker(QUEUE, async (job) => {
    const { duration_ms, steps, fail_times } = job.data.input;
    await emit(job, 'started', { attempt: job.attemptsMade + 1 });
    if (job.attemptsMade < fail_times) throw new Error(`attempt ${job.attemptsMade + 1} fails on purpose`);
    const start = wallMs();
    for (let step = 1; step <= steps; step++) {
      const wait = start + (duration_ms * step) / steps - wallMs();
      if (wait > 0) await sleep(wait);
      const progress = { percent: (100 * step) / steps, message: `step ${step}/${steps}`, data: null };
      await job.updateProgress(progress);
      await emit(job, 'progress', { ...progress, t: wallMs() }); // t: emit time, for delivery latency
    }
    return { slept_ms: duration_ms };
  }, { connection, concurrency: Number(env.WORKER_CONCURRENCY || 100) });
  w.on('completed', async (job, result) => { await emit(job, 'succeeded', { result, t: wallMs() }); seqs.delete(job.id); });
  w.on('failed', async (job, err) => {
    if (!job) return;
    const final = job.attemptsMade >= (job.opts.attempts || 1);
    await emit(job, final ? 'failed' : 'retrying', { message: err.message, t: wallMs() });
    seqs.delete(job.id);
  });
  await w.waitUntilReady();
  closers.unshift(() => w.close());
  return null;
}

async function ws() {
  const queue = new Queue(QUEUE, { connection });
  closers.push(() => queue.close());
  const [h, p] = listenAddr(env.WS_ADDR || '127.0.0.1:3001');
  const http = createServer();
  const io = new Server(http, { serveClient: false });
  io.use((socket, next) => {
    try { socket.data.user = verify(socket.handshake.auth?.token); next(); } catch { next(new Error('unauthorized')); }
  });
  io.on('connection', (socket) => {
    const sub = socket.data.user.sub;
    // {owner: "self"} or {operation_id}; the ack carries the current resource for an operation.
    socket.on('subscribe', async (msg = {}, ack = () => {}) => {
      if (msg.owner === 'self') { socket.join(`owner:${sub}`); return ack({ ok: true }); }
      const job = msg.operation_id && (await Job.fromId(queue, String(msg.operation_id)));
      if (!job || job.data.owner !== sub) return ack({ ok: false, code: 'not_found' });
      socket.join(`op:${job.id}`);
      ack({ ok: true, operation: resource(job, await job.getState()) });
    });
    socket.on('unsubscribe', (msg = {}, ack = () => {}) => { socket.leave(`op:${msg.operation_id}`); ack({ ok: true }); });
  });
  const subscriber = new Redis(REDIS_URL);
  await subscriber.subscribe(CHANNEL);
  subscriber.on('message', (_channel, raw) => {
    const { owner, ...frame } = JSON.parse(raw);
    io.to(`op:${frame.operation_id}`).to(`owner:${owner}`).emit('event', frame);
  });
  http.listen(p, h);
  await new Promise((resolve) => http.once('listening', resolve));
  closers.push(() => new Promise((resolve) => io.close(resolve)), () => subscriber.quit());
  return `${h}:${http.address().port}`;
}

const roles = { api, worker, ws };
if (!roles[role]) {
  console.error('usage: node stack/server.mjs api|worker|ws');
  process.exit(2);
}
const addr = await roles[role]();
console.log(JSON.stringify({ ready: role, pid: process.pid, addr }));
const shutdown = async () => {
  for (const close of closers) await close().catch(() => {});
  process.exit(0);
};
process.once('SIGTERM', shutdown).once('SIGINT', shutdown);
