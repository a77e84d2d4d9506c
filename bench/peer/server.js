// The comparison peer for `make bench`: what the Node/Fastify backend did on the hot paths, as a
// cluster of two processes (like our two gunicorn workers). Same shapes, same stores, same token.
//   GET  /health       fixed JSON
//   GET  /jwt          JWT check + fixed JSON          (our availability poll)
//   POST /heartbeat    JWT check + one Redis SET        (our mitra heartbeat)
//   GET  /me           JWT check + one PostgreSQL row   (our GET /api/client/me)
'use strict';
const cluster = require('node:cluster');

const WORKERS = Number(process.env.PEER_WORKERS || 2);
if (cluster.isPrimary) {
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  cluster.on('exit', () => process.exit(1));
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const fastify = require('fastify')({ logger: false });
  const Redis = require('ioredis');
  const { Pool } = require('pg');
  const redis = new Redis(process.env.REDIS_URL);
  const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
  fastify.register(require('@fastify/jwt'), {
    secret: process.env.AUTH_JWT_SECRET,
    verify: { algorithms: ['HS256'], allowedAud: 'halobestie-app', allowedIss: 'halobestie' },
  });
  const auth = async (req) => { await req.jwtVerify(); };
  fastify.get('/health', async () => ({ success: true, data: { status: 'ok' } }));
  fastify.get('/jwt', { onRequest: auth }, async () => ({ success: true, data: { available: true, count: 1 } }));
  fastify.post('/heartbeat', { onRequest: auth }, async (req, reply) => {
    await redis.set(`mitra:heartbeat:${req.user.sub}`, String(Date.now() / 1000), 'EX', 86400);
    reply.code(204).send();
  });
  fastify.get('/me', { onRequest: auth }, async (req) => {
    const { rows } = await pool.query('SELECT * FROM customers WHERE id = $1', [req.user.sub]);
    return { success: true, data: rows[0] };
  });
  fastify.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
}
