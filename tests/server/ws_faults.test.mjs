// WebSocket faults: bad messages get the documented error or close code, and the server keeps serving others.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import WebSocket from 'ws';
import { startServer, metric } from './helpers.mjs';

const KEY = 'sk-ws-' + Math.random().toString(36).slice(2);
let srv, wsUrl, rssBaseline;
// Resident memory of the server in MiB.
const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${srv.pid}/status`, 'utf8'))[1]) / 1024;
const auth = { headers: { Authorization: `Bearer ${KEY}` } };

before(async () => {
  srv = await startServer(['--api-key', KEY, '--max-body', '4096', '--max-tokens', '32', '-c', '512']);
  wsUrl = srv.url.replace('http:', 'ws:') + '/v1/ws';
  await stillServes();   // warm up (first-use allocations) before the baseline
  rssBaseline = rss();
});
after(async () => { assert.equal(await srv.stop(), 0); });

// Opens a connection; resolves { ws, msgs, next(pred), closed() } or rejects with the HTTP status of a refused upgrade.
function connect(url = wsUrl, opts = auth) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    const msgs = [];
    let waiters = [];
    let closeInfo = null;
    const closedP = new Promise((r) => ws.on('close', (code, reason) => { closeInfo = { code, reason: reason.toString() }; r(closeInfo); waiters.forEach((w) => w()); }));
    const c = {
      ws, msgs,
      send: (m) => ws.send(typeof m === 'string' || Buffer.isBuffer(m) ? m : JSON.stringify(m)),
      closed: () => closedP,
      next(pred = () => true, ms = 15000) {
        return new Promise((res, rej) => {
          const t = setTimeout(() => rej(new Error('timed out; got ' + JSON.stringify(msgs))), ms);
          const look = () => {
            const i = msgs.findIndex((m) => !m.taken && pred(m));
            if (i >= 0) { msgs[i].taken = true; clearTimeout(t); res(msgs[i]); return true; }
            if (closeInfo) { clearTimeout(t); rej(new Error(`closed ${closeInfo.code} while waiting; got ${JSON.stringify(msgs)}`)); return true; }
            return false;
          };
          if (!look()) waiters.push(look);
        });
      },
    };
    ws.on('message', (d) => { msgs.push(JSON.parse(d.toString())); waiters = waiters.filter((w) => !w()); });
    ws.on('open', () => resolve(c));
    ws.on('unexpected-response', (_req, res) => { reject(Object.assign(new Error('refused'), { status: res.statusCode })); ws.terminate(); });
    ws.on('error', (e) => reject(e));
  });
}

async function stillServes() {
  const c = await connect();
  c.send({ type: 'generate', id: 'ok', prompt: 'The', max_tokens: 4, temperature: 0 });
  const end = await c.next((m) => m.id === 'ok' && (m.type === 'done' || m.type === 'error'));
  assert.equal(end.type, 'done', JSON.stringify(end));
  assert.equal(end.usage.completion_tokens, 4);
  c.ws.close();
  assert.ok(srv.alive());
}

test('the upgrade needs the API key (header or ?api_key=) and a same-origin Origin', async () => {
  await assert.rejects(connect(wsUrl, {}), (e) => e.status === 401);
  await assert.rejects(connect(wsUrl, { headers: { Authorization: 'Bearer wrong' } }), (e) => e.status === 401);
  await assert.rejects(connect(wsUrl + '?api_key=wrong', {}), (e) => e.status === 401);
  const q = await connect(wsUrl + '?api_key=' + encodeURIComponent(KEY), {});
  q.send({ type: 'ping', data: 1 });
  assert.equal((await q.next()).type, 'pong');
  q.ws.close();
  await assert.rejects(connect(wsUrl, { headers: { ...auth.headers, Origin: 'http://evil.example' } }), (e) => e.status === 403);
  const same = await connect(wsUrl, { headers: { ...auth.headers, Origin: srv.url } });
  same.ws.close();
});

test('malformed JSON, unknown types and bad fields get errors; the connection stays open', async () => {
  const c = await connect();
  const expectErr = async (msg, code, id) => {
    c.send(msg);
    const e = await c.next((m) => m.type === 'error');
    assert.equal(e.code, code, JSON.stringify(e));
    assert.equal(typeof e.message, 'string');
    if (id !== undefined) assert.equal(e.id, id);
  };
  await expectErr('{"type": "generate", ', 'invalid_request');
  await expectErr('[1, 2]', 'invalid_request');
  await expectErr({ type: 'dance', id: 'd' }, 'invalid_request', 'd');
  await expectErr({ id: 'z' }, 'invalid_request');
  await expectErr({ type: 'generate', prompt: 'x' }, 'invalid_request');            // no id
  await expectErr({ type: 'generate', id: 'p', prompt: 5 }, 'invalid_request', 'p');
  await expectErr({ type: 'generate', id: 'q', prompt: 'x', temperature: 'hot' }, 'invalid_request', 'q');
  await expectErr({ type: 'generate', id: 'm', prompt: 'x', max_tokens: -5 }, 'invalid_request', 'm');
  await expectErr({ type: 'generate', id: 'w', prompt: 'word '.repeat(600) }, 'invalid_request', 'w');  // longer than the context
  await expectErr({ type: 'resume', id: 'r', resume_token: 'abc', last_index: 'x' }, 'invalid_request', 'r');
  await expectErr({ type: 'resume', id: 'r', resume_token: 'abc', last_index: 3 }, 'not_found', 'r');
  c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  assert.equal((await c.next((m) => m.type === 'error')).code, 'invalid_request');
  // Absurd max_tokens is clamped to the server's --max-tokens.
  c.send({ type: 'generate', id: 'big', prompt: 'The', max_tokens: 1e12, temperature: 0 });
  const end = await c.next((m) => m.id === 'big' && m.type === 'done');
  assert.ok(end.usage.completion_tokens <= 32, JSON.stringify(end.usage));
  c.send({ type: 'ping', data: 'still here' });
  assert.equal((await c.next((m) => m.type === 'pong')).data, 'still here');
  c.ws.close();
});

test('fragmented messages are joined', async () => {
  const c = await connect();
  const msg = JSON.stringify({ type: 'ping', data: 'x'.repeat(1000) });
  c.ws.send(msg.slice(0, 10), { fin: false });
  c.ws.send(msg.slice(10, 500), { fin: false });
  c.ws.send(msg.slice(500), { fin: true });
  assert.equal((await c.next((m) => m.type === 'pong')).data, 'x'.repeat(1000));
  c.ws.close();
});

test('an oversized message, whole or in fragments, gets too_large and close 1009', async () => {
  for (const fragmented of [false, true]) {
    const c = await connect();
    const big = JSON.stringify({ type: 'ping', data: 'y'.repeat(5000) });
    if (fragmented) {
      for (let i = 0; i < big.length; i += 1000) c.ws.send(big.slice(i, i + 1000), { fin: i + 1000 >= big.length });
    } else {
      c.send(big);
    }
    const closed = await c.closed();
    assert.equal(closed.code, 1009);
    assert.equal(c.msgs.at(-1)?.code, 'too_large', JSON.stringify(c.msgs));
  }
  await stillServes();
});

test('invalid UTF-8 closes with 1007; valid multi-byte text passes', async () => {
  const ok = await connect();
  ok.send({ type: 'ping', data: 'é中😀' });
  assert.equal((await ok.next((m) => m.type === 'pong')).data, 'é中😀');
  ok.ws.close();
  // Stray bytes, an overlong '/', a UTF-16 surrogate, a code point above U+10FFFF, a truncated sequence.
  for (const bad of ['ff fe', 'c0 af', 'ed a0 80', 'f4 90 80 80', 'e2 82']) {
    const c = await connect();
    const bytes = Buffer.concat([Buffer.from('{"type":"ping","data":"'), Buffer.from(bad.replace(/ /g, ''), 'hex'), Buffer.from('"}')]);
    c.ws.send(bytes, { binary: false });
    const closed = await c.closed();
    assert.equal(closed.code, 1007, bad);
  }
  await stillServes();
});

test('a client that vanishes mid-stream does not disturb the others', async () => {
  const a = await connect();
  const b = await connect();
  a.send({ type: 'generate', id: 'a', prompt: 'The', max_tokens: 32, temperature: 0 });
  b.send({ type: 'generate', id: 'b', prompt: 'The', max_tokens: 32, temperature: 0 });
  await a.next((m) => m.type === 'token');
  a.ws.terminate();
  const end = await b.next((m) => m.id === 'b' && m.type === 'done');
  assert.equal(end.usage.completion_tokens, 32);
  b.ws.close();
  await stillServes();
  const m = await (await fetch(srv.url + '/metrics', auth)).text();
  assert.ok(metric(m, 'lowbit_ws_connections_total') >= 8);
  assert.match(m, /lowbit_ws_closes_total\{code="1009"\} 2/);
  assert.match(m, /lowbit_ws_closes_total\{code="1007"\} 5/);
});

test('a client that stops reading hits the bounded outbox (close 1008) while others are served', async () => {
  const slow = await connect();
  slow.ws.pause();   // stop reading: the kernel's socket buffers fill, then the server's outbox
  const ping = JSON.stringify({ type: 'ping', data: 'z'.repeat(3000) });
  for (let i = 0; i < 6000; i++) slow.ws.send(ping);
  let overflows = 0;
  for (let i = 0; i < 200 && !overflows; i++) {
    await new Promise((r) => setTimeout(r, 50));
    overflows = metric(await (await fetch(srv.url + '/metrics', auth)).text(), 'lowbit_ws_closes_total{code="1008"}');
  }
  assert.ok(overflows >= 1, 'the outbox limit was reached');
  await stillServes();
  slow.ws.terminate();
});

test('random and mutated messages, whole or fragmented: every connection ends cleanly, the server keeps serving', async () => {
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const values = [null, true, -1, 0, 1e308, -1e308, 3.5, '', 'x', 'é', [], {}, [1, 'a'], { a: { b: [] } }, 'The', 2 ** 53,
    [{ role: 'user', content: 'hi' }], [{ role: 5 }], ['\n'], 'f'.repeat(32)];
  const keys = ['type', 'id', 'prompt', 'messages', 'max_tokens', 'temperature', 'top_p', 'top_k', 'seed', 'stop',
    'resumable', 'resume_token', 'last_index', 'data'];
  const types = ['generate', 'cancel', 'resume', 'ping', 'pong', '', 'GENERATE', 5];
  for (let round = 0; round < 6; round++) {
    const c = await connect();
    for (let i = 0; i < 60 && c.ws.readyState === WebSocket.OPEN; i++) {
      const m = { type: pick(types), id: pick(['a', 'b', '', 'x'.repeat(200), 7]) };
      for (let k = 0; k < 3; k++) m[pick(keys)] = pick(values);
      if (m.type === 'generate' && rnd() < 0.5) Object.assign(m, { prompt: 'The', max_tokens: 2 });
      let data = JSON.stringify(m);
      const r = rnd();
      if (r < 0.1) data = data.slice(0, Math.floor(rnd() * data.length));                               // truncated
      else if (r < 0.2) data = Buffer.from(data).map((b) => (rnd() < 0.05 ? Math.floor(rnd() * 256) : b));  // bytes flipped
      if (rnd() < 0.2 && data.length > 2) {
        const cut = 1 + Math.floor(rnd() * (data.length - 1));
        c.ws.send(data.slice(0, cut), { binary: false, fin: false });
        c.ws.send(data.slice(cut), { binary: false, fin: true });
      } else {
        c.ws.send(data, { binary: false });
      }
    }
    if (c.ws.readyState === WebSocket.OPEN) c.send({ type: 'ping', data: 'end' });
    await Promise.race([c.next((m) => m.type === 'pong' && m.data === 'end').catch(() => {}), c.closed()]);
    c.ws.terminate();
  }
  await stillServes();
});

test('afterwards every connection is gone and memory is back near the baseline', async (t) => {
  let open = NaN;
  for (let i = 0; i < 100 && open !== 0; i++) {
    open = metric(await (await fetch(srv.url + '/metrics', auth)).text(), 'lowbit_ws_connections');
    if (open !== 0) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(open, 0, 'open WebSocket connections');
  const slack = Number(process.env.LB_RSS_SLACK_MB ?? 12);
  const now = rss();
  t.diagnostic(`VmRSS: baseline ${rssBaseline.toFixed(1)} MiB, after the suite ${now.toFixed(1)} MiB (slack ${slack} MiB)`);
  assert.ok(now - rssBaseline < slack, `VmRSS grew from ${rssBaseline.toFixed(1)} to ${now.toFixed(1)} MiB`);
});
