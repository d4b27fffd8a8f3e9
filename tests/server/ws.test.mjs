// The WebSocket protocol of docs/protocol.md against lowbit serve: generate, cancel, ping, two at once, drop and resume.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, metric } from './helpers.mjs';

let srv, wsUrl;

before(async () => {
  srv = await startServer(['--parallel', '2', '--max-tokens', '400', '-c', '512']);
  wsUrl = srv.url.replace('http:', 'ws:') + '/v1/ws';
});
after(async () => { assert.equal(await srv.stop(), 0, 'the server exits cleanly on SIGTERM'); });

// A connection whose messages are kept in order; next(pred) waits for the first unread one matching pred.
function connect(url = wsUrl, opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    const msgs = [];
    let waiters = [];
    const c = {
      ws, msgs, closed: null,
      send: (m) => ws.send(JSON.stringify(m)),
      next(pred = () => true, ms = 15000) {
        return new Promise((res, rej) => {
          const look = () => {
            const i = msgs.findIndex((m) => !m.taken && pred(m));
            if (i >= 0) { msgs[i].taken = true; res(msgs[i]); return true; }
            if (c.closed) { rej(new Error(`closed (${c.closed.code}) while waiting; got ${JSON.stringify(msgs.slice(-5))}`)); return true; }
            return false;
          };
          if (look()) return;
          const t = setTimeout(() => { waiters = waiters.filter((w) => w !== look); rej(new Error('timed out; last: ' + JSON.stringify(msgs.slice(-5)))); }, ms);
          waiters.push(() => { if (look()) { clearTimeout(t); return true; } return false; });
        });
      },
      // Every message of generation id up to and including its done (or error).
      async until(id, ms = 20000) {
        const end = await c.next((m) => m.id === id && (m.type === 'done' || m.type === 'error'), ms);
        return { end, tokens: msgs.filter((m) => m.id === id && m.type === 'token') };
      },
    };
    const wake = () => { waiters = waiters.filter((w) => !w()); };
    ws.on('message', (d) => { msgs.push(JSON.parse(d.toString())); wake(); });
    ws.on('close', (code, reason) => { c.closed = { code, reason: reason.toString() }; wake(); });
    ws.on('open', () => resolve(c));
    ws.on('error', reject);
  });
}

function checkIndexes(tokens) {
  tokens.forEach((t, i) => assert.equal(t.index, i, `token ${i} has index ${t.index}`));
}
const text = (tokens) => tokens.map((t) => t.piece).join('');

test('ping gets pong with the same data', async () => {
  const c = await connect();
  c.send({ type: 'ping', data: { n: 7, s: 'é' } });
  assert.deepEqual((await c.next((m) => m.type === 'pong')).data, { n: 7, s: 'é' });
  c.ws.close();
});

test('generate streams indexed tokens and a done equal to the HTTP completion', async () => {
  const c = await connect();
  c.send({ type: 'generate', id: 'g1', prompt: 'The kernel', max_tokens: 16, temperature: 0 });
  const started = await c.next((m) => m.type === 'started');
  assert.equal(started.id, 'g1');
  assert.equal(started.resume_token, undefined, 'no resume token unless asked');
  const { end, tokens } = await c.until('g1');
  assert.equal(end.type, 'done', JSON.stringify(end));
  assert.equal(end.finish_reason, 'length');
  assert.equal(end.usage.completion_tokens, 16);
  assert.equal(end.usage.total_tokens, end.usage.prompt_tokens + 16);
  assert.ok(end.timings.ttft_ms > 0 && end.timings.total_ms >= end.timings.ttft_ms && end.timings.tokens_per_second > 0,
    JSON.stringify(end.timings));
  assert.ok(tokens.length >= 16 && tokens.length <= 17, `${tokens.length} token messages`);
  checkIndexes(tokens);
  assert.ok(tokens.every((t) => typeof t.piece === 'string' && typeof t.latency_ms === 'number'));
  const ref = await (await fetch(srv.url + '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'The kernel', max_tokens: 16, temperature: 0 }) })).json();
  assert.equal(text(tokens), ref.choices[0].text);
  c.ws.close();
});

test('generate with chat messages', async () => {
  const c = await connect();
  c.send({ type: 'generate', id: 'chat', messages: [{ role: 'user', content: 'What is a driver?' }], max_tokens: 12,
    temperature: 0, stop: ['\n\n'] });
  const { end, tokens } = await c.until('chat');
  assert.equal(end.type, 'done', JSON.stringify(end));
  assert.ok(['stop', 'length'].includes(end.finish_reason));
  checkIndexes(tokens);
  c.ws.close();
});

test('cancel stops a generation; cancelling an unknown id is not_found', async () => {
  const c = await connect();
  c.send({ type: 'generate', id: 'long', prompt: 'The', max_tokens: 300, temperature: 0 });
  await c.next((m) => m.type === 'token' && m.index === 2);
  c.send({ type: 'cancel', id: 'long' });
  const { end, tokens } = await c.until('long');
  assert.equal(end.type, 'done');
  assert.equal(end.finish_reason, 'cancelled');
  assert.ok(end.usage.completion_tokens < 300, `${end.usage.completion_tokens} tokens`);
  checkIndexes(tokens);
  c.send({ type: 'cancel', id: 'nope' });
  const err = await c.next((m) => m.type === 'error');
  assert.equal(err.id, 'nope');
  assert.equal(err.code, 'not_found');
  c.ws.close();
});

test('two generations at once on one connection', async () => {
  const c = await connect();
  c.send({ type: 'generate', id: 'a', prompt: 'The driver', max_tokens: 40, temperature: 0 });
  c.send({ type: 'generate', id: 'b', prompt: 'A file system', max_tokens: 40, temperature: 0 });
  const [ra, rb] = await Promise.all([c.until('a'), c.until('b')]);
  for (const r of [ra, rb]) {
    assert.equal(r.end.type, 'done', JSON.stringify(r.end));
    assert.equal(r.end.usage.completion_tokens, 40);
    checkIndexes(r.tokens);
  }
  // Both ran at the same time: each one's first token came before the other's done.
  const at = (pred) => c.msgs.findIndex(pred);
  assert.ok(at((m) => m.id === 'b' && m.type === 'token') < at((m) => m.id === 'a' && m.type === 'done'), 'b started before a ended');
  assert.ok(at((m) => m.id === 'a' && m.type === 'token') < at((m) => m.id === 'b' && m.type === 'done'), 'a started before b ended');
  // The same id twice while the first runs is refused.
  c.send({ type: 'generate', id: 'x', prompt: 'The', max_tokens: 200 });
  c.send({ type: 'generate', id: 'x', prompt: 'The', max_tokens: 5 });
  const dup = await c.next((m) => m.id === 'x' && m.type === 'error');
  assert.equal(dup.code, 'invalid_request');
  c.send({ type: 'cancel', id: 'x' });
  await c.until('x');
  c.ws.close();
});

test('drop mid-stream, reconnect, resume: no token lost or repeated', async () => {
  const req = { prompt: 'The kernel module', max_tokens: 120, temperature: 0, seed: 1 };
  const r0 = await connect();
  r0.send({ type: 'generate', id: 'ref', ...req });
  const ref = await r0.until('ref');
  assert.equal(ref.end.type, 'done');
  r0.ws.close();

  const c1 = await connect();
  c1.send({ type: 'generate', id: 'r', resumable: true, ...req });
  const started = await c1.next((m) => m.type === 'started');
  assert.match(started.resume_token, /^[0-9a-f]{32}$/);
  await c1.next((m) => m.type === 'token' && m.index === 5);
  c1.ws.terminate();   // abrupt: no close frame, as when a network drops
  const got = c1.msgs.filter((m) => m.type === 'token');
  const last = got.at(-1).index;
  await new Promise((r) => setTimeout(r, 300));   // the generation keeps running meanwhile

  const c2 = await connect();
  c2.send({ type: 'resume', id: 'r', resume_token: 'f'.repeat(32), last_index: last });
  const bad = await c2.next((m) => m.type === 'error');
  assert.equal(bad.code, 'not_found');
  c2.send({ type: 'resume', id: 'r', resume_token: started.resume_token, last_index: last });
  const rest = await c2.until('r');
  assert.equal(rest.end.type, 'done', JSON.stringify(rest.end));
  assert.equal(rest.tokens[0].index, last + 1, 'the replay starts right after the last token received');
  const all = [...got, ...rest.tokens];
  checkIndexes(all);
  assert.equal(all.length, ref.tokens.length);
  assert.equal(text(all), text(ref.tokens));
  // the same prompt as ref's: all of it but the last token came from the prompt cache
  assert.deepEqual({ ...rest.end.usage, cached_tokens: 0 }, { ...ref.end.usage, cached_tokens: 0 });
  assert.equal(rest.end.usage.cached_tokens, ref.end.usage.prompt_tokens - 1);
  assert.equal(rest.end.finish_reason, ref.end.finish_reason);
  c2.ws.close();
});

test('a generation that finished while detached is replayed with its done', async () => {
  const c1 = await connect();
  c1.send({ type: 'generate', id: 'f', prompt: 'The driver', max_tokens: 24, temperature: 0, resumable: true });
  const started = await c1.next((m) => m.type === 'started');
  await c1.next((m) => m.type === 'token' && m.index === 1);
  c1.ws.terminate();
  const got = c1.msgs.filter((m) => m.type === 'token');
  await new Promise((r) => setTimeout(r, 800));   // long enough for the remaining tokens
  const c2 = await connect();
  c2.send({ type: 'resume', id: 'f', resume_token: started.resume_token, last_index: got.at(-1).index });
  const rest = await c2.until('f');
  assert.equal(rest.end.type, 'done');
  assert.equal(rest.end.usage.completion_tokens, 24);
  checkIndexes([...got, ...rest.tokens]);
  // Resuming again from the start replays everything (the buffer is kept for the grace period).
  c2.send({ type: 'resume', id: 'f', resume_token: started.resume_token, last_index: -1 });
  const again = await c2.next((m) => m.id === 'f' && m.type === 'done');
  const all = c2.msgs.filter((m) => m.id === 'f' && m.type === 'token').slice(rest.tokens.length);
  checkIndexes(all);
  assert.equal(text(all), text([...got, ...rest.tokens]));
  assert.deepEqual(again.usage, rest.end.usage);
  c2.ws.close();
});

test('a non-resumable generation is cancelled when its connection drops', async () => {
  const m0 = metric(await (await fetch(srv.url + '/metrics')).text(), 'lowbit_tokens_generated_total');
  const c = await connect();
  c.send({ type: 'generate', id: 'gone', prompt: 'The', max_tokens: 400, temperature: 0 });
  await c.next((m) => m.type === 'token' && m.index === 2);
  c.ws.terminate();
  let busy = NaN;
  for (let i = 0; i < 200; i++) {
    busy = metric(await (await fetch(srv.url + '/metrics')).text(), 'lowbit_slots_busy');
    if (busy === 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(busy, 0, 'the slot was freed');
  const m = await (await fetch(srv.url + '/metrics')).text();
  assert.ok(metric(m, 'lowbit_tokens_generated_total') - m0 < 300, 'it stopped early');
  assert.ok(metric(m, 'lowbit_ws_connections_total') >= 6);
  assert.ok(metric(m, 'lowbit_ws_resumes_total') >= 1);
});
