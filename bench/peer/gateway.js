// The gateway's peer for `make bench-realtime`: what the original's stack (Fastify 5 with
// @fastify/websocket, pg, ioredis, node:crypto) does for exactly our gateway's work, as a cluster of
// two processes (like our two gunicorn workers), on the same PostgreSQL schema and Valkey:
//   a socket: the auth frame (JWT HS256 with audience and issuer, the revocation set), at join the
//     participant check (one row), its presence (lib/sockets.py's script, refreshed every 10 s) and
//     a subscription to its user's channel;
//   message.send: validation, the per-sender quota (one INCRBY), an AES-256-GCM seal with the session
//     as associated data, one idempotent INSERT (lib/chat/messages.py's statement), message.sent to
//     the sender, message.new published to the other party's channel and delivered to that user's
//     sockets of that session (or general ones).
// Environment: PORT, DATABASE_URL, REDIS_URL, AUTH_JWT_SECRET, PEER_WORKERS (2).
'use strict';
const cluster = require('node:cluster');

const WORKERS = Number(process.env.PEER_WORKERS || 2);
if (cluster.isPrimary) {
  cluster.schedulingPolicy = cluster.SCHED_NONE; // each worker accepts for itself, as gunicorn's do
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  cluster.on('exit', () => process.exit(1));
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
    process.exit(0);
  });
} else {
  worker();
}

function worker() {
  const crypto = require('node:crypto');
  const os = require('node:os');
  const Redis = require('ioredis');
  const { Pool } = require('pg');
  const fastify = require('fastify')({ logger: false });

  const redis = new Redis(process.env.REDIS_URL);
  const bus = new Redis(process.env.REDIS_URL);
  const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 16 });
  const processId = `${os.hostname()}:${process.pid}`;
  const revoked = new Set(); // our gateway keeps the revoked sessions in memory too (lib/auth/revocation.py)
  const dataKey = crypto.randomBytes(32);
  let dataKeyId = null; // a chat_data_keys row, made at start
  const MAX_CONTENT = 4000;
  const MAX_CLIENT_ID = 64;
  const PER_MINUTE = Number(process.env.MESSAGES_PER_MINUTE || 60);
  const ANNOUNCE = `
local lapse, now, ttl = ARGV[1], ARGV[2], ARGV[3]
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, lapse, ARGV[i + 3])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('EXPIRE', key, ttl)
end
return #KEYS`;
  const SEND =
    'WITH i AS (SELECT $1::uuid AS s, $2::text AS t, $3::uuid AS u, $4::text AS cm, $5::uuid AS k, ' +
    '$6::bytea AS nonce, $7::bytea AS c), ' +
    's AS (SELECT i.*, cs.status AS session_status, cs.customer_id AS session_customer, cs.mitra_id AS session_mitra ' +
    'FROM i JOIN chat_sessions cs ON cs.id = i.s ' +
    "AND CASE i.t WHEN 'customer' THEN cs.customer_id ELSE cs.mitra_id END = i.u), " +
    'ins AS (INSERT INTO chat_messages (session_id, sender_type, sender_id, client_message_id, key_id, nonce, ciphertext) ' +
    "SELECT s, t, u, cm, k, nonce, c FROM s WHERE session_status = 'active' " +
    'ON CONFLICT (session_id, sender_id, client_message_id) DO NOTHING RETURNING *) ' +
    'SELECT s.session_status, s.session_customer, s.session_mitra, ins.* ' +
    'FROM s LEFT JOIN ins ON ins.session_id = s.s AND ins.sender_id = s.u AND ins.client_message_id = s.cm';

  const byUser = new Map(); // "type:id" -> Set of sockets
  const frame = (type, data) => JSON.stringify({ type, data, at: new Date().toISOString() });
  const uuidBytes = (id) => Buffer.from(id.replace(/-/g, ''), 'hex');
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

  bus.on('message', (channel, text) => {
    const group = byUser.get(channel.slice(5)); // "user:<type>:<id>"
    if (!group) return;
    const sessionId = JSON.parse(text).data.session_id;
    for (const conn of group) {
      if (conn.sessionId === null || conn.sessionId === sessionId) conn.ws.send(text);
    }
  });

  function announce(entries) {
    if (!entries.length) return Promise.resolve();
    const now = Date.now() / 1000;
    return redis.eval(ANNOUNCE, entries.length, ...entries.map((e) => e[0]), now + 30, now, 60, ...entries.map((e) => e[1]));
  }
  const presenceOf = (conn) => [`ws:${conn.userType}:${conn.userId}`, `${processId}|${conn.sessionId || '*'}`];
  setInterval(() => {
    const entries = [];
    for (const group of byUser.values()) for (const conn of group) entries.push(presenceOf(conn));
    for (let i = 0; i < entries.length; i += 500) announce(entries.slice(i, i + 500)).catch(() => {});
  }, 10_000);

  fastify.register(require('@fastify/jwt'), {
    secret: process.env.AUTH_JWT_SECRET,
    verify: { algorithms: ['HS256'], allowedAud: 'halobestie-app', allowedIss: 'halobestie' },
  });
  fastify.register(require('@fastify/websocket'), { options: { maxPayload: 16 * 1024 } });
  fastify.get('/health', async () => ({ success: true, data: { status: 'ok' } }));
  fastify.register(async (app) => {
    app.get('/api/shared/ws', { websocket: true }, (socket) => serve(app, socket));
  });

  function serve(app, ws) {
    let conn = null;
    ws.on('message', async (raw, isBinary) => {
      if (conn === null) {
        conn = { pending: true };
        conn = await authenticate(app, ws, raw, isBinary);
        return;
      }
      if (conn.pending) return;
      let body;
      try {
        body = JSON.parse(raw.toString());
      } catch {
        ws.send(frame('error', { code: 'BAD_FRAME' }));
        return;
      }
      if (body.type === 'message.send') await send(conn, body);
      else if (body.type === 'ping') ws.send(frame('pong', {}));
      else ws.send(frame('error', { code: 'UNKNOWN_TYPE', type: body.type }));
    });
    ws.on('close', () => {
      if (conn === null || conn.pending) return;
      const key = `${conn.userType}:${conn.userId}`;
      const group = byUser.get(key);
      group.delete(conn);
      redis.zrem(...presenceOf(conn)).catch(() => {});
      if (group.size === 0) {
        byUser.delete(key);
        bus.unsubscribe(`user:${key}`).catch(() => {});
      }
    });
  }

  async function authenticate(app, ws, raw, isBinary) {
    let claims, first;
    try {
      first = JSON.parse(raw.toString());
      if (isBinary || first.type !== 'auth' || typeof first.token !== 'string') throw new Error('auth');
      claims = app.jwt.verify(first.token);
      if (revoked.has(claims.session_id)) throw new Error('auth');
    } catch {
      ws.close(4401);
      return null;
    }
    const sessionId = first.session_id || null;
    if (sessionId !== null) {
      const column = claims.user_type === 'customer' ? 'customer_id' : 'mitra_id';
      const ok =
        UUID.test(sessionId) &&
        (await pool.query(`SELECT customer_id, mitra_id, status FROM chat_sessions WHERE id = $1 AND ${column} = $2`, [
          sessionId,
          claims.sub,
        ])).rowCount === 1;
      if (!ok) {
        ws.close(4403);
        return null;
      }
    }
    const conn = { ws, userType: claims.user_type, userId: claims.sub, sessionId, pending: false };
    const key = `${conn.userType}:${conn.userId}`;
    let group = byUser.get(key);
    if (!group) {
      group = new Set();
      byUser.set(key, group);
      await bus.subscribe(`user:${key}`);
    }
    group.add(conn);
    await announce([presenceOf(conn)]);
    ws.send(frame('auth.ok', { user_type: conn.userType, user_id: conn.userId, session_id: sessionId }));
    return conn;
  }

  async function send(conn, body) {
    const cm = body.client_message_id;
    const content = body.content;
    if (conn.sessionId === null) return conn.ws.send(frame('error', { code: 'NO_SESSION', type: body.type }));
    if (
      typeof cm !== 'string' || cm.length < 1 || cm.length > MAX_CLIENT_ID ||
      typeof content !== 'string' || content.length < 1 || content.length > MAX_CONTENT || !content.trim() ||
      content.includes('\u0000')
    ) {
      return conn.ws.send(frame('error', { code: 'VALIDATION_ERROR', type: body.type }));
    }
    const window = Math.floor(Date.now() / 60000) * 60;
    const counted = await redis.incrby(`rl:messages:${conn.userId}:${window}`, 1);
    if (counted === 1) redis.expire(`rl:messages:${conn.userId}:${window}`, 120).catch(() => {});
    if (counted > PER_MINUTE) return conn.ws.send(frame('error', { code: 'RATE_LIMITED', type: body.type }));
    const nonce = crypto.randomBytes(12);
    const cipher = crypto.createCipheriv('aes-256-gcm', dataKey, nonce);
    cipher.setAAD(uuidBytes(conn.sessionId));
    const sealed = Buffer.concat([cipher.update(content, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    const { rows } = await pool.query(SEND, [conn.sessionId, conn.userType, conn.userId, cm, dataKeyId, nonce, sealed]);
    const row = rows[0];
    if (!row) return conn.ws.send(frame('error', { code: 'NOT_FOUND', type: body.type }));
    if (!row.id) return conn.ws.send(frame('error', { code: 'SESSION_NOT_ACTIVE', type: body.type }));
    const doc = {
      id: row.id,
      session_id: row.session_id,
      client_message_id: row.client_message_id,
      sender_type: row.sender_type,
      kind: row.kind,
      content,
      status: row.status,
      created_at: row.created_at,
    };
    const other = conn.userType === 'customer' ? `mitra:${row.session_mitra}` : `customer:${row.session_customer}`;
    await redis.publish(`user:${other}`, frame('message.new', doc));
    conn.ws.send(frame('message.sent', doc));
  }

  pool
    .query(
      'INSERT INTO chat_data_keys (master_key_id, nonce, wrapped) VALUES ($1, $2, $3) ' +
        'ON CONFLICT (master_key_id) DO UPDATE SET nonce = EXCLUDED.nonce RETURNING id',
      [`bench-peer-${process.pid}`, crypto.randomBytes(12), crypto.randomBytes(48)],
    )
    .then(({ rows }) => {
      dataKeyId = rows[0].id;
      return fastify.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
    });
}
