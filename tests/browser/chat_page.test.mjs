// The chat page (www/) in headless Chromium against `lowbit serve`: tokens stream in, stop halts them, history is sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer, metric } from '../server/helpers.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.LB_CHROMIUM || '/usr/bin/chromium';
const SHOT = path.join(root, 'build/screenshots/chat.png');
let srv, browser, profile;

before(async () => {
  // A long max_tokens so the answer is still streaming when the test presses stop, one to three seconds after the
  // first token (the browser's own pace): 900 tokens ran out before that once decoding passed 1,400 tok/s, and so
  // did 4000 now and then.  16000 tokens on one thread (the other is the browser's) take over ten seconds.
  srv = await startServer(['--web-root', path.join(root, 'www'), '--max-tokens', '16000', '-c', '16384', '-t', '1']);
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, viewport: { width: 900, height: 760 },
    args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  await browser?.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
  assert.equal(await srv.stop(), 0);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const lastAnswer = (page) => page.evaluate(() => [...document.querySelectorAll('.msg.assistant .text')].at(-1)?.textContent ?? '');

// Records what the page sends, whichever transport it picked.
function recordRequests(page) {
  const sent = [];
  page.on('request', (r) => { if (r.url().endsWith('/v1/chat/completions')) sent.push(JSON.parse(r.postData())); });
  page.on('websocket', (ws) => ws.on('framesent', (f) => {
    try { const m = JSON.parse(f.payload); if (m.type === 'generate') sent.push(m); } catch { /* not ours */ }
  }));
  return sent;
}

async function streamThenStop(transport, { breakWs = false, expect = transport } = {}) {
  const page = await browser.newPage();
  // A server or proxy without /v1/ws: the upgrade goes to a path that answers 404.
  if (breakWs) {
    await page.addInitScript(() => {
      const Real = window.WebSocket;
      window.WebSocket = class extends Real { constructor(url, p) { super(String(url).replace('/v1/ws', '/v1/no-ws'), p); } };
    });
  }
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const sent = recordRequests(page);
  await page.goto(`${srv.url}/?transport=${transport}&max_tokens=16000&temperature=0.7&seed=7`);
  const before = metric(await (await fetch(srv.url + '/metrics')).text(), 'lowbit_tokens_generated_total');

  await page.fill('#prompt', 'Explain how a Linux kernel module is loaded, step by step.');
  await page.press('#prompt', 'Enter');
  await page.waitForFunction(() => document.body.dataset.state === 'generating');
  await page.waitForFunction(() => ([...document.querySelectorAll('.msg.assistant .text')].at(-1)?.textContent ?? '').length > 0,
    null, { timeout: 20000 });
  // Text grows over time: three samples, each longer than the one before.
  const lens = [];
  for (let i = 0; i < 3; i++) { lens.push((await lastAnswer(page)).length); await sleep(250); }
  assert.ok(lens[0] < lens[1] && lens[1] < lens[2], `the answer did not grow while streaming: ${lens}`);
  assert.match(await page.textContent('#ttft'), /^\d+$/, 'time to first token is shown');
  assert.match(await page.textContent('#tps'), /^\d+(\.\d)?$/, 'tokens per second is shown');
  const shown = await page.getAttribute('#transport', 'data-transport');
  assert.equal(shown, expect, 'the transport in use');
  if (breakWs) assert.match(await page.textContent('#transport'), /SSE \(WebSocket unavailable\)/);

  await page.click('#stop');
  await page.waitForFunction(() => document.body.dataset.state === 'idle', null, { timeout: 10000 });
  assert.equal(await page.textContent('#finish'), 'cancelled');
  assert.equal(await page.isVisible('#error'), false, await page.textContent('#error'));
  // Stop halts growth, and the server's slot is freed long before max_tokens.
  const stopped = await lastAnswer(page);
  await sleep(600);
  assert.equal((await lastAnswer(page)).length, stopped.length, 'text kept arriving after stop');
  if (transport === 'auto' && !breakWs) {
    fs.mkdirSync(path.dirname(SHOT), { recursive: true });
    await page.screenshot({ path: SHOT, fullPage: true });
  }
  let busy = 1;
  for (let t = 0; t < 50 && busy !== 0; t++) {
    busy = metric(await (await fetch(srv.url + '/metrics')).text(), 'lowbit_slots_busy');
    if (busy) await sleep(100);
  }
  assert.equal(busy, 0, 'the generation still runs on the server after stop');
  const spent = metric(await (await fetch(srv.url + '/metrics')).text(), 'lowbit_tokens_generated_total') - before;
  assert.ok(spent < 12000, `the stopped generation ran to its end (${spent} tokens)`);

  // The next turn sends the whole conversation, the stopped answer included.
  await page.fill('#prompt', 'Shorter, please.');
  await page.press('#prompt', 'Enter');
  await page.waitForFunction(() => document.body.dataset.state === 'generating');
  await page.click('#stop');
  await page.waitForFunction(() => document.body.dataset.state === 'idle', null, { timeout: 10000 });
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1].messages.map((m) => m.role), ['user', 'assistant', 'user']);
  assert.equal(sent[1].messages[1].content, stopped);
  assert.equal(sent[1].messages[2].content, 'Shorter, please.');
  assert.deepEqual(errors, []);
  await page.close();
  return { shown, spent };
}

test('SSE: tokens stream in, figures are live, stop ends the generation early', async (t) => {
  const r = await streamThenStop('sse');
  t.diagnostic(`sse: ${r.spent} tokens generated before stop`);
});

test('WebSocket: tokens stream in, figures are live, stop (a cancel message) ends the generation early', async (t) => {
  const r = await streamThenStop('ws');
  t.diagnostic(`ws: ${r.spent} tokens generated before stop`);
});

test('auto transport picks the WebSocket when /v1/ws exists; screenshot saved', async (t) => {
  const r = await streamThenStop('auto', { expect: 'ws' });
  t.diagnostic(`auto picked ${r.shown}; ${r.spent} tokens before stop; screenshot ${path.relative(root, SHOT)}`);
  assert.ok(fs.statSync(SHOT).size > 1000);
});

test('auto falls back to SSE when the WebSocket upgrade fails, and says so', async (t) => {
  const r = await streamThenStop('auto', { breakWs: true, expect: 'sse' });
  t.diagnostic(`fallback: ${r.spent} tokens generated before stop`);
});

test('a server error is shown to the user, over either transport', async () => {
  for (const transport of ['sse', 'ws']) {
    const page = await browser.newPage();
    await page.goto(`${srv.url}/?transport=${transport}&max_tokens=-3`);
    await page.fill('#prompt', 'hello');
    await page.press('#prompt', 'Enter');
    await page.waitForSelector('#error:not([hidden])', { timeout: 10000 });
    assert.match(await page.textContent('#error'), transport === 'sse' ? /400.*max_tokens/ : /max_tokens/, transport);
    assert.equal(await page.textContent('#finish'), 'error');
    assert.equal(await page.isDisabled('#send'), false, 'the page can send again');
    await page.close();
  }
});
