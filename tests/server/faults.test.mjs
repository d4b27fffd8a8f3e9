// Errors and faults over raw HTTP and curl: bad input gets the right OpenAI-style error, and the server keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startServer, metric } from './helpers.mjs';

const run = promisify(execFile);
let srv, webRoot;

before(async () => {
  webRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-web-'));
  fs.writeFileSync(path.join(webRoot, 'index.html'), '<p>lowbit</p>');
  fs.writeFileSync(path.join(path.dirname(webRoot), path.basename(webRoot) + '-secret.txt'), 'secret');
  // One slot and no queue, so a generation still running after its client left shows up as a 429.
  srv = await startServer(['--max-body', '4096', '--queue', '0', '--max-tokens', '1000', '--web-root', webRoot, '-c', '512']);
});
after(async () => {
  assert.equal(await srv.stop(), 0);
  fs.rmSync(webRoot, { recursive: true, force: true });
  fs.rmSync(webRoot + '-secret.txt', { force: true });
});

// Polls /metrics until no slot is generating; returns the last value seen.
async function waitIdle(ms = 5000) {
  const t0 = Date.now();
  let busy = NaN;
  while (Date.now() - t0 < ms) {
    busy = metric(await (await fetch(srv.url + '/metrics')).text(), 'lowbit_slots_busy');
    if (busy === 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  return busy;
}

const post = (route, body, headers = {}) => fetch(srv.url + route, {
  method: 'POST', headers: { 'Content-Type': 'application/json', ...headers },
  body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
});

async function expectError(res, status, code) {
  assert.equal(res.status, status);
  assert.match(res.headers.get('content-type'), /application\/json/);
  const j = await res.json();
  assert.equal(typeof j.error.message, 'string');
  assert.equal(typeof j.error.type, 'string');
  if (code) assert.equal(j.error.code, code);
}

test('malformed JSON, wrong shapes and invalid UTF-8 get 400', async () => {
  await expectError(await post('/v1/completions', '{"prompt": "x",'), 400, 'invalid_json');
  await expectError(await post('/v1/completions', '[1,2]'), 400, 'invalid_json');
  await expectError(await post('/v1/completions', { prompt: 5 }), 400);
  await expectError(await post('/v1/chat/completions', { messages: [] }), 400);
  await expectError(await post('/v1/chat/completions', { messages: [{ role: 'wizard', content: 'hi' }] }), 400);
  await expectError(await post('/v1/completions', { prompt: 'x', temperature: 'hot' }), 400);
  await expectError(await post('/v1/completions', Buffer.from('{"prompt": "\xff\xfe"}', 'latin1')), 400, 'invalid_json');
  await expectError(await post('/v1/completions', { prompt: 'x', max_tokens: 2.5 }), 400);
});

test('oversized body gets 413; a prompt longer than the context gets 400', async () => {
  await expectError(await post('/v1/completions', { prompt: 'a'.repeat(10000) }), 413, 'request_too_large');
  await expectError(await post('/v1/completions', { prompt: 'word '.repeat(800) }), 400, 'context_length_exceeded');
});

test('unknown routes get 404, wrong methods 405', async () => {
  await expectError(await fetch(srv.url + '/v1/nothing'), 404, 'not_found');
  const r = await fetch(srv.url + '/v1/completions');
  assert.equal(r.headers.get('allow'), 'POST');
  await expectError(r, 405, 'method_not_allowed');
  await expectError(await post('/health', {}), 405);
});

test('static files come from the web root only', async () => {
  const ok = await fetch(srv.url + '/');
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), '<p>lowbit</p>');
  const name = path.basename(webRoot) + '-secret.txt';
  for (const p of [`/../${name}`, `/%2e%2e/${name}`, `/..%2f${name}`]) {
    const { stdout } = await run('curl', ['-s', '--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', srv.url + p]);
    assert.equal(stdout, '404', p);
  }
});

test('curl -N receives SSE events ending with [DONE]', async () => {
  const body = JSON.stringify({ prompt: 'The kernel', max_tokens: 12, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  const { stdout } = await run('curl', ['-sN', '-H', 'Content-Type: application/json', '-d', body, srv.url + '/v1/completions']);
  const events = stdout.split('\n\n').filter((e) => e.length);
  assert.ok(events.every((e) => e.startsWith('data: ')), stdout);
  assert.equal(events.at(-1), 'data: [DONE]');
  const usage = JSON.parse(events.at(-2).slice(6)).usage;
  assert.equal(usage.completion_tokens, 12);
  const text = events.slice(0, -2).map((e) => JSON.parse(e.slice(6)).choices[0].text).join('');
  assert.ok(text.length > 0);
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
  const before = metric(await (await fetch(srv.url + '/metrics')).text(), 'lowbit_tokens_generated_total');
  const res = await post('/v1/completions', { prompt: 'The', max_tokens: 400, temperature: 0, stream: true });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  for (let i = 0; i < 3; i++) await reader.read();
  await reader.cancel();
  // The slot frees within a few tokens: with no queue, a new request would otherwise get 429.
  const busy = await waitIdle();
  assert.equal(busy, 0, 'the abandoned generation ended');
  const spent = metric(await (await fetch(srv.url + '/metrics')).text(), 'lowbit_tokens_generated_total') - before;
  assert.ok(spent < 300, `the abandoned generation ran on for ${spent} of its 400 tokens`);
  const next = await post('/v1/completions', { prompt: 'The', max_tokens: 4, temperature: 0 });
  assert.equal(next.status, 200);
  assert.equal((await next.json()).usage.completion_tokens, 4);
  const m = await (await fetch(srv.url + '/metrics')).text();
  assert.ok(metric(m, 'lowbit_tokens_generated_total') > 0);
  assert.match(m, /lowbit_requests_total\{route="\/v1\/completions",status="429"\} 1/);
  assert.match(m, /lowbit_time_to_first_token_seconds_count \d+/);
  assert.equal(metric(m, 'lowbit_active_requests'), 0);
  assert.ok(srv.alive());
});
