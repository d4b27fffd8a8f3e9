// The HTTP fault suite: hostile and broken clients get the right OpenAI-style error, the server keeps serving the
// others, static files stay inside the web root, CORS is off unless asked, and memory returns to its baseline.
// LB_RSS_SLACK_MB (default 12) is how far resident memory may end above the baseline (the ASan run raises it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startServer, metric } from './helpers.mjs';

const IO_TIMEOUT_S = 3;   // --io-timeout: short, so slow clients are cut within the test's time
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let srv, port, webRoot, outside, rssBaseline;

before(async () => {
  webRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-web-'));
  outside = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-outside-'));
  fs.writeFileSync(path.join(webRoot, 'index.html'), '<p>lowbit</p>');
  for (const f of ['a.js', 'a.mjs', 'a.css', 'a.wasm', 'a.json', '.env']) fs.writeFileSync(path.join(webRoot, f), 'x');
  fs.mkdirSync(path.join(webRoot, 'plain'));
  fs.writeFileSync(path.join(webRoot, 'plain', 'listed-if-listing.txt'), 'x');
  fs.writeFileSync(path.join(path.dirname(webRoot), path.basename(webRoot) + '-secret.txt'), 'secret');
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'secret');
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(webRoot, 'link-out.txt'));
  fs.symlinkSync(outside, path.join(webRoot, 'dir-out'));
  // One slot and no queue, so a generation still running after its client left shows up as a 429.
  srv = await startServer(['--max-body', '4096', '--queue', '0', '--max-tokens', '1000', '--web-root', webRoot, '-c', '512',
    '--io-timeout', String(IO_TIMEOUT_S)]);
  port = Number(new URL(srv.url).port);
  // The baseline is taken once the model is paged in and a few requests have run.
  for (let i = 0; i < 3; i++) await (await post('/v1/completions', { prompt: 'The', max_tokens: 16 })).json();
  rssBaseline = rss();
});
// A sanitizer build reports on stderr (UBSan) or in ASAN_OPTIONS' log_path: either way the exit status or the log says so.
async function stopClean(server) {
  const code = await server.stop();
  assert.doesNotMatch(server.log(), /runtime error|Sanitizer/, server.log().slice(-6000));
  assert.equal(code, 0, `the server exited with ${code}:\n${server.log().slice(-6000)}`);
}

after(async () => {
  await stopClean(srv);
  fs.rmSync(webRoot, { recursive: true, force: true });
  fs.rmSync(outside, { recursive: true, force: true });
  fs.rmSync(webRoot + '-secret.txt', { force: true });
});

function rss() {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${srv.pid}/status`, 'utf8'));
  return Number(m[1]) / 1024;
}

const getMetrics = async () => (await fetch(srv.url + '/metrics')).text();

// Polls /metrics until no slot is generating and no request handler is still busy; returns the busy slots last seen.
async function waitIdle(ms = 8000) {
  const t0 = Date.now();
  let busy = NaN;
  while (Date.now() - t0 < ms) {
    const m = await getMetrics();
    busy = metric(m, 'lowbit_slots_busy');
    if (busy === 0 && metric(m, 'lowbit_active_requests') === 0) break;
    await sleep(25);
  }
  return busy;
}

// The count of finished /v1/completions requests with this status.
const finished = (m, status) => Number(new RegExp(`lowbit_requests_total\\{route="/v1/completions",status="${status}"\\} (\\d+)`).exec(m)?.[1] ?? 0);

// Polls /metrics until the count of finished requests with this status exceeds `from`.
async function waitFinished(status, from, ms = 15000) {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (finished(await getMetrics(), status) > from) return true;
    await sleep(25);
  }
  return false;
}

function post(route, body, headers = {}, signal) {
  return fetch(srv.url + route, {
    method: 'POST', signal, headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
}

async function expectError(res, status, code) {
  assert.equal(res.status, status);
  assert.match(res.headers.get('content-type'), /application\/json/);
  const j = await res.json();
  assert.equal(typeof j.error.message, 'string');
  assert.equal(typeof j.error.type, 'string');
  if (code) assert.equal(j.error.code, code);
  return j;
}

// One raw HTTP exchange on its own connection: writes `parts` (strings or Buffers, `gapMs` apart), then
// collects everything until the server closes (or `waitMs` passes). Resolves to { status, body, raw, ms, closed }.
function raw(parts, { gapMs = 0, waitMs = 10000, destroyAfterWrite = false } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(port, '127.0.0.1');
    const chunks = [];
    let timer, closed = false;
    const finish = () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, raw: text, body: text.slice(text.indexOf('\r\n\r\n') + 4), ms: Date.now() - t0, closed });
    };
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => { closed = true; finish(); });
    timer = setTimeout(() => { s.destroy(); }, waitMs);
    s.on('connect', async () => {
      for (const p of parts) {
        if (s.destroyed) return;
        s.write(p);
        if (gapMs) await sleep(gapMs);
      }
      if (destroyAfterWrite) s.destroy();
    });
  });
}

const request = (method, target, body = '', headers = {}) => {
  const h = { Host: '127.0.0.1', Connection: 'close', ...headers };
  if (body) h['Content-Length'] = Buffer.byteLength(body);
  return `${method} ${target} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`;
};

// ------------------------------------------------------------------ bad input

test('malformed JSON and wrong shapes get 400', async () => {
  await expectError(await post('/v1/completions', '{"prompt": "x",'), 400, 'invalid_json');
  await expectError(await post('/v1/completions', '[1,2]'), 400, 'invalid_json');
  await expectError(await post('/v1/completions', ''), 400);
  await expectError(await post('/v1/completions', '{"prompt": "x"} trailing'), 400, 'invalid_json');
  await expectError(await post('/v1/completions', { prompt: 5 }), 400);
  await expectError(await post('/v1/chat/completions', { messages: [] }), 400);
  await expectError(await post('/v1/chat/completions', { messages: 'hi' }), 400);
  await expectError(await post('/v1/chat/completions', { messages: [{ role: 'wizard', content: 'hi' }] }), 400);
  await expectError(await post('/v1/completions', { prompt: 'x', temperature: 'hot' }), 400);
  await expectError(await post('/v1/completions', '{"prompt": "x", "prompt": "y"}'), 400);
  assert.ok(srv.alive());
});

test('invalid UTF-8 in the prompt gets 400, as raw bytes or as escapes', async () => {
  const bad = [
    Buffer.from('{"prompt": "\xff\xfe"}', 'latin1'),                       // bytes that are never UTF-8
    Buffer.from('{"prompt": "ab\xc0\xaf"}', 'latin1'),                     // an overlong '/'
    Buffer.from('{"prompt": "ab\xe2\x82"}', 'latin1'),                     // a truncated 3-byte sequence
    Buffer.from('{"prompt": "\xed\xa0\x80"}', 'latin1'),                   // an encoded surrogate
    Buffer.from('{"messages": [{"role": "user", "content": "\xf8\x88\x80\x80\x80"}]}', 'latin1'),
    '{"prompt": "\\ud800 alone"}',                                         // a lone surrogate escape
    '{"prompt": "nul \\u0000 inside"}',                                     // NUL would cut the C string
  ];
  for (const [i, b] of bad.entries()) {
    const route = String(b).includes('messages') ? '/v1/chat/completions' : '/v1/completions';
    const r = await post(route, b);
    assert.equal(r.status, 400, `case ${i}`);
    await expectError(r, 400);
  }
  // Valid multi-byte text is of course fine.
  const ok = await post('/v1/completions', { prompt: 'Grüße, 東京 🚀', max_tokens: 2 });
  assert.equal(ok.status, 200);
  await ok.json();
});

test('absurd max_tokens: 400 for nonsense, a clamp for too many', async () => {
  for (const mt of ['-5', '0', '2.5', '"12"', '1e400', '99999999999999999999999', 'true', '[1]']) {
    const j = await expectError(await post('/v1/completions', `{"prompt": "x", "max_tokens": ${mt}}`), 400);
    assert.match(j.error.message + (j.error.param ?? ''), /max_tokens|JSON|number|integer/i, mt);
  }
  // 1e9 is clamped to the context left after the prompt (-c 512), not refused and not run for a billion tokens.
  const t0 = Date.now();
  const r = await post('/v1/completions', { prompt: 'The', max_tokens: 1e9, stream: true });
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.ok(text.endsWith('data: [DONE]\n\n'));
  assert.ok(Date.now() - t0 < 30000);
});

test('wrong or missing Content-Type gets 415; JSON with parameters is fine', async () => {
  const body = JSON.stringify({ prompt: 'x', max_tokens: 1 });
  for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx']) {
    await expectError(await post('/v1/completions', body, { 'Content-Type': ct }), 415, 'unsupported_media_type');
  }
  const none = await raw([request('POST', '/v1/completions', body)]);
  assert.equal(none.status, 415, none.raw);
  assert.equal(JSON.parse(none.body).error.code, 'unsupported_media_type');
  for (const ct of ['application/json; charset=utf-8', 'Application/JSON']) {
    const r = await post('/v1/completions', body, { 'Content-Type': ct });
    assert.equal(r.status, 200, ct);
    await r.json();
  }
});

test('oversized bodies and headers are refused, and the connection is closed', async () => {
  await expectError(await post('/v1/completions', { prompt: 'a'.repeat(10000) }), 413, 'request_too_large');
  await expectError(await post('/v1/completions', { prompt: 'word '.repeat(800) }), 400, 'context_length_exceeded');
  // A declared length far beyond the limit is refused before a byte of the body is read.
  const huge = await raw([`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{`]);
  assert.equal(huge.status, 413);
  assert.ok(huge.closed);
  // Chunked, so no length is declared: the limit applies while reading.
  const chunk = Buffer.from(`{"prompt": "${'b'.repeat(3000)}`);
  const chunked = await raw([
    'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
    `${chunk.length.toString(16)}\r\n`, chunk, '\r\n', `${chunk.length.toString(16)}\r\n`, chunk, '\r\n', '0\r\n\r\n']);
  assert.equal(chunked.status, 413, chunked.raw.slice(0, 200));
  // Headers larger than civetweb's buffer: a JSON error, not a crash.
  const big = await raw([`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40000)}\r\n\r\n`]);
  assert.ok(big.status === 413 || big.status === 431 || big.status === 400, big.raw.slice(0, 200));
  assert.equal(typeof JSON.parse(big.body).error.code, 'string');
  const g = await raw(['GARBAGE\r\n\r\n']);
  assert.equal(g.status, 400);
  assert.equal(JSON.parse(g.body).error.code, 'malformed_request');
  assert.equal((await fetch(srv.url + '/health')).status, 200);
});

test('unknown routes get 404, wrong methods 405', async () => {
  await expectError(await fetch(srv.url + '/v1/nothing'), 404, 'not_found');
  const r = await fetch(srv.url + '/v1/completions');
  assert.equal(r.headers.get('allow'), 'POST');
  await expectError(r, 405, 'method_not_allowed');
  await expectError(await post('/health', {}), 405);
  await expectError(await post('/index.html', {}), 404);
});

// ------------------------------------------------------------------ static files

test('static files: right MIME types, no listing, nothing outside the root', async () => {
  const ok = await fetch(srv.url + '/');
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get('content-type'), /^text\/html/);
  assert.equal(await ok.text(), '<p>lowbit</p>');
  const types = { 'a.js': /^text\/javascript/, 'a.mjs': /^text\/javascript/, 'a.css': /^text\/css/,
    'a.wasm': /^application\/wasm/, 'a.json': /^application\/json/ };
  for (const [f, re] of Object.entries(types)) {
    const r = await fetch(`${srv.url}/${f}`);
    assert.equal(r.status, 200, f);
    assert.match(r.headers.get('content-type'), re, f);
    await r.text();
  }
  // A directory without index.html is neither listed nor served.
  for (const p of ['/plain', '/plain/']) {
    const r = await fetch(srv.url + p);
    assert.ok(r.status === 403 || r.status === 404, `${p}: ${r.status}`);
    assert.doesNotMatch(await r.text(), /listed-if-listing/);
  }
  const name = path.basename(webRoot) + '-secret.txt';
  const escapes = [`/../${name}`, `/%2e%2e/${name}`, `/..%2f${name}`, `/%2e%2e%2f${name}`, `/.%2e/${name}`,
    `/%252e%252e/${name}`, `/..\\${name}`, `/..%5c${name}`, '/../../../../../../etc/passwd', '/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
    '/..%2f..%2f..%2f..%2fetc%2fpasswd', '//etc/passwd', '/link-out.txt', '/dir-out/secret.txt',
    '/.env', '/%2eenv', '/plain/../../' + name];
  for (const p of escapes) {
    const r = await raw([request('GET', p)]);
    assert.ok(r.status === 403 || r.status === 404 || r.status === 400, `${p}: ${r.status}`);
    assert.doesNotMatch(r.body, /secret|root:/, p);
  }
  // civetweb decodes %00 and the path ends there: at most the root's index, never the file behind it.
  const nul = await raw([request('GET', '/%00/../etc/passwd')]);
  assert.doesNotMatch(nul.body, /root:/);
});

// ------------------------------------------------------------------ CORS

test('CORS is off by default: no Access-Control-* header anywhere', async () => {
  const origin = { Origin: 'https://evil.example' };
  const seen = [];
  for (const r of [
    await fetch(srv.url + '/', { headers: origin }),
    await fetch(srv.url + '/a.js', { headers: origin }),
    await fetch(srv.url + '/health', { headers: origin }),
    await fetch(srv.url + '/v1/models', { headers: origin }),
    await post('/v1/completions', { prompt: 'x', max_tokens: 1, stream: true }, origin),
    await post('/v1/completions', '{', origin),
    await fetch(srv.url + '/v1/chat/completions', { method: 'OPTIONS',
      headers: { ...origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' } }),
  ]) {
    await r.arrayBuffer();
    seen.push([r.status, [...r.headers.keys()].filter((k) => k.startsWith('access-control'))]);
  }
  assert.deepEqual(seen.map((s) => s[1]), seen.map(() => []), JSON.stringify(seen));
  assert.equal(seen.at(-1)[0], 204, 'OPTIONS is answered, without CORS headers');
});

test('--cors ORIGIN: answers name the origin and preflights are answered (before the key check)', async () => {
  const key = 'k-' + Math.random().toString(36).slice(2);
  const c = await startServer(['--cors', 'https://example.org', '--api-key', key, '--max-tokens', '4', '-c', '256']);
  try {
    const origin = { Origin: 'https://example.org' };
    const pre = await fetch(c.url + '/v1/chat/completions', { method: 'OPTIONS',
      headers: { ...origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), 'https://example.org');
    assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
    assert.match(pre.headers.get('access-control-allow-headers'), /authorization/i);
    assert.match(pre.headers.get('access-control-allow-headers'), /content-type/i);
    const auth = { ...origin, Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };
    const sse = await fetch(c.url + '/v1/completions', { method: 'POST', headers: auth,
      body: JSON.stringify({ prompt: 'x', stream: true }) });
    assert.equal(sse.headers.get('access-control-allow-origin'), 'https://example.org');
    assert.match(await sse.text(), /\[DONE\]/);
    const models = await fetch(c.url + '/v1/models', { headers: auth });
    assert.equal(models.headers.get('access-control-allow-origin'), 'https://example.org');
    assert.match(models.headers.get('vary') ?? '', /Origin/);
    await models.json();
    // An error must be readable cross-origin too, or the page only sees "network error".
    const denied = await fetch(c.url + '/v1/models', { headers: origin });
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get('access-control-allow-origin'), 'https://example.org');
    await denied.json();
  } finally {
    await stopClean(c);
  }
});

// ------------------------------------------------------------------ slow and vanishing clients

test('slowloris: headers sent one byte a second are cut off, and others are served meanwhile', async () => {
  const slow = request('POST', '/v1/completions', '{"prompt":"x"}', { 'Content-Type': 'application/json' });
  const loris = [0, 1].map(() => raw([...slow], { gapMs: 1000, waitMs: 20000 }));
  await sleep(500);
  // While they dribble, /health and a real generation are answered at once.
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    assert.equal((await fetch(srv.url + '/health')).status, 200);
    assert.ok(Date.now() - t0 < 500, `health took ${Date.now() - t0} ms`);
  }
  const gen = await post('/v1/completions', { prompt: 'The', max_tokens: 8, temperature: 0 });
  assert.equal(gen.status, 200);
  assert.equal((await gen.json()).usage.completion_tokens, 8);
  for (const r of await Promise.all(loris)) {
    assert.ok(r.closed, 'the server closed the slow connection');
    assert.ok(r.ms >= IO_TIMEOUT_S * 1000 - 200 && r.ms < IO_TIMEOUT_S * 1000 + 3000, `cut after ${r.ms} ms`);
    assert.equal(r.status, 400, r.raw);
    assert.equal(JSON.parse(r.body).error.code, 'malformed_request');
  }
});

test('a body trickled a byte at a time gets 408 within the I/O timeout, and others are served meanwhile', async () => {
  const body = JSON.stringify({ prompt: 'x'.repeat(200), max_tokens: 1 });
  const head = request('POST', '/v1/completions', body, { 'Content-Type': 'application/json' });
  const split = head.indexOf('\r\n\r\n') + 4;
  // Each byte comes well inside the per-read timeout, so only a deadline on the whole body stops it.
  const dribble = raw([head.slice(0, split), ...body], { gapMs: 250, waitMs: 20000 });
  await sleep(500);
  assert.equal((await fetch(srv.url + '/health')).status, 200);
  const r = await dribble;
  assert.equal(r.status, 408, r.raw);
  // Closed, not drained: the thread is free again although the client would go on dribbling for a minute.
  assert.ok(r.closed, 'the server closed the connection');
  assert.ok(r.ms >= IO_TIMEOUT_S * 1000 - 200 && r.ms < IO_TIMEOUT_S * 1000 + 5000, `cut after ${r.ms} ms`);
  const next = await post('/v1/completions', { prompt: 'The', max_tokens: 2 });
  assert.equal(next.status, 200);
});

test('idle connections that never send a byte are dropped after the I/O timeout', async () => {
  const idle = Array.from({ length: 5 }, () => raw([], { waitMs: 15000 }));
  await sleep(300);
  const t0 = Date.now();
  assert.equal((await fetch(srv.url + '/health')).status, 200);
  assert.ok(Date.now() - t0 < 1000);
  for (const r of await Promise.all(idle)) {
    assert.ok(r.closed && r.ms < IO_TIMEOUT_S * 1000 + 3000, `idle connection lived ${r.ms} ms`);
  }
});

test('a full server answers 429 with Retry-After', async () => {
  const long = await post('/v1/completions', { prompt: 'The', max_tokens: 400, stream: true });
  const reader = long.body.getReader();
  await reader.read();   // the first chunk: the slot is now busy
  const r = await post('/v1/completions', { prompt: 'x', max_tokens: 1 });
  assert.equal(r.headers.get('retry-after'), '1');
  await expectError(r, 429, 'queue_full');
  await reader.cancel();
  assert.equal(await waitIdle(), 0);
});

test('a client that disconnects mid-stream cancels its generation; the next request works', async () => {
  const before = metric(await getMetrics(), 'lowbit_tokens_generated_total');
  const res = await post('/v1/completions', { prompt: 'The', max_tokens: 400, temperature: 0, stream: true });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  for (let i = 0; i < 3; i++) await reader.read();
  await reader.cancel();
  // The slot frees within a few tokens: with no queue, a new request would otherwise get 429.
  const busy = await waitIdle();
  assert.equal(busy, 0, 'the abandoned generation ended');
  const spent = metric(await getMetrics(), 'lowbit_tokens_generated_total') - before;
  assert.ok(spent < 300, `the abandoned generation ran on for ${spent} of its 400 tokens`);
  const next = await post('/v1/completions', { prompt: 'The', max_tokens: 4, temperature: 0 });
  assert.equal(next.status, 200);
  assert.equal((await next.json()).usage.completion_tokens, 4);
  const m = await getMetrics();
  assert.ok(metric(m, 'lowbit_tokens_generated_total') > 0);
  assert.match(m, /lowbit_requests_total\{route="\/v1\/completions",status="429"\} \d+/);
  assert.match(m, /lowbit_time_to_first_token_seconds_count \d+/);
  assert.equal(metric(m, 'lowbit_active_requests'), 0);
  assert.ok(srv.alive());
});

test('many clients vanishing at every stage: the server cleans up and keeps serving', async () => {
  const before = metric(await getMetrics(), 'lowbit_tokens_generated_total');
  const body = JSON.stringify({ prompt: 'The', max_tokens: 300, stream: true });
  const head = 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n';
  for (let round = 0; round < 4; round++) {
    // Gone right after sending the request, before any answer: the server notices on its first write (499).
    const left = finished(await getMetrics(), 499);
    await raw([request('POST', '/v1/completions', body, { 'Content-Type': 'application/json' })], { destroyAfterWrite: true });
    assert.ok(await waitFinished(499, left), `round ${round}: the server never noticed the client had gone`);
    assert.equal(await waitIdle(), 0, `round ${round}: gone before the answer`);
    // Gone halfway through the body.
    await raw([`${head}Content-Length: ${body.length}\r\n\r\n`, body.slice(0, 10)], { destroyAfterWrite: true });
    // Gone after the first SSE chunk, via an aborted fetch.
    const ctrl = new AbortController();
    const res = await post('/v1/completions', body, {}, ctrl.signal);
    await res.body.getReader().read();
    ctrl.abort();
    assert.equal(await waitIdle(), 0, `round ${round}: gone mid-stream`);
  }
  // A non-streaming client that leaves cannot be noticed: its generation runs, bounded by max_tokens.
  const done = finished(await getMetrics(), 200);
  await raw([request('POST', '/v1/completions', JSON.stringify({ prompt: 'The', max_tokens: 40 }),
    { 'Content-Type': 'application/json' })], { destroyAfterWrite: true });
  assert.ok(await waitFinished(200, done), 'the abandoned non-streaming request finished');
  assert.equal(await waitIdle(), 0);
  const spent = metric(await getMetrics(), 'lowbit_tokens_generated_total') - before;
  assert.ok(spent < 8 * 300 / 2, `abandoned generations ran on: ${spent} tokens`);
  const m = await getMetrics();
  assert.equal(metric(m, 'lowbit_active_requests'), 0);
  assert.match(m, /status="499"/);
  const ok = await post('/v1/completions', { prompt: 'The', max_tokens: 3 });
  assert.equal(ok.status, 200);
  assert.equal((await ok.json()).usage.completion_tokens, 3);
});

test('a burst of connections beyond the thread count: every one gets a proper answer', async () => {
  // civetweb has parallel + queue + 8 threads (+ 32 kept for WebSockets): 150 connections at once, more than that,
  // wait for a thread instead of failing.
  const health = Array.from({ length: 150 }, () => raw([request('GET', '/health')], { waitMs: 20000 }));
  // Generation requests at the same time: one gets the slot, the others a 429 (or the slot once it is free).
  const gens = Array.from({ length: 12 }, () => post('/v1/completions', { prompt: 'The', max_tokens: 24, stream: true })
    .then(async (r) => ({ status: r.status, body: await r.text() })));
  const hs = await Promise.all(health);
  assert.deepEqual([...new Set(hs.map((r) => r.status))], [200], 'every /health answered 200');
  const gs = await Promise.all(gens);
  for (const g of gs) {
    assert.ok(g.status === 200 || g.status === 429, `status ${g.status}`);
    if (g.status === 200) assert.ok(g.body.endsWith('data: [DONE]\n\n'));
    else assert.equal(JSON.parse(g.body).error.code, 'queue_full');
  }
  assert.ok(gs.some((g) => g.status === 200) && gs.some((g) => g.status === 429), gs.map((g) => g.status).join(' '));
  assert.equal(await waitIdle(), 0);
  assert.ok(srv.alive());
});

test('memory returns near the baseline after the faults', async (t) => {
  assert.equal(await waitIdle(), 0);
  await sleep(300);
  const slack = Number(process.env.LB_RSS_SLACK_MB ?? 12);
  const now = rss();
  // The prompt store keeps the keys and values of earlier requests by design (bounded by --prompt-store): memory it
  // reports holding is not a leak.
  const metricsText = await getMetrics();
  const store = metric(metricsText, 'lowbit_prompt_store_bytes') / 2 ** 20;
  assert.ok(store >= 0 && metric(metricsText, 'lowbit_prompt_store_entries') >= 1, 'the prompt store reports its usage');
  t.diagnostic(`VmRSS: baseline ${rssBaseline.toFixed(1)} MiB, after the suite ${now.toFixed(1)} MiB, of which the prompt ` +
               `store ${store.toFixed(1)} MiB (slack ${slack} MiB)`);
  assert.ok(now - store - rssBaseline < slack, `VmRSS grew from ${rssBaseline.toFixed(1)} to ${now.toFixed(1)} MiB ` +
            `(${store.toFixed(1)} MiB in the prompt store)`);
  assert.ok(srv.alive());
});
