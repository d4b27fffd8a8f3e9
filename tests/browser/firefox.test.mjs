// Firefox (puppeteer-core over WebDriver BiDi, /usr/bin/firefox-esr): capabilities, the threaded build on an isolated page
// with greedy output = native lowbit (acceptances 1 and 5), speed, and an offline reload from OPFS.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import puppeteer from 'puppeteer-core';
import { startServer } from './server.mjs';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './server.mjs';
import { HARNESS, N_GEN, driveChat, freshProfileDir, nativeGreedy, oraclePrompts, record, testModels } from './lib.mjs';

let srv, browser, page, version;
const rows = [];
const B = 'firefox';
const add = (backend, model, metric, value) => { if (value != null && Number.isFinite(value)) rows.push({ browser: B, browserVersion: version, backend, model, metric, value }); };

before(async () => {
  srv = await startServer();
  browser = await puppeteer.launch({
    browser: 'firefox', executablePath: '/usr/bin/firefox-esr', headless: true, userDataDir: freshProfileDir('firefox'), protocolTimeout: 600000,
    extraPrefsFirefox: { 'dom.webgpu.enabled': true, 'gfx.webgpu.ignore-blocklist': true, 'gfx.webgpu.force-enabled': true },
  });
  version = (await browser.version()).replace(/^Firefox\//i, '');
  page = await browser.newPage();
  page.on('pageerror', (e) => console.log('pageerror:', e.message));
  await page.goto(srv.url + HARNESS);
  await page.waitForFunction(() => window.lbtReady === true);
});

after(async () => {
  await record(rows).catch((e) => console.log('recording to DuckDB failed:', e.message));
  await browser?.close();
  await srv?.close();
});

test('capability report: SIMD and threads on an isolated page', async () => {
  const caps = await page.evaluate(() => lowbit.detectCapabilities());
  console.log('capabilities:', JSON.stringify({ ...caps, userAgent: undefined }));
  assert.equal(caps.engine, 'firefox');
  assert.equal(caps.simd, true);
  assert.equal(caps.threads, true, caps.threadsReason);
  add('caps', '', 'hardware_concurrency', caps.hardwareConcurrency);
  add('caps', '', 'webgpu_available', caps.webgpu.available ? 1 : 0);
});

const prompts = oraclePrompts();

// The first model runs on the threaded build 'auto' picks; the others single-threaded, because two spinning threads on a
// busy 2-core machine can be ten times slower than one (the 2-bit file has no SIMD kernel yet and is slow already).
testModels().forEach((model, mi) => {
  const mt = mi === 0;
  test(`greedy ${N_GEN} tokens = native lowbit, ${mt ? 'threaded build (auto)' : 'SIMD single thread'}: ${model}`, async () => {
    const want = prompts.map((p) => nativeGreedy(model, p));
    const r = await page.evaluate((u, ps, n, o) => lbt.greedy(u, ps, n, o), `${srv.url}/models/${model}`, prompts, N_GEN,
      mt ? { threads: 2 } : { backend: 'wasm-simd' });
    // the "-relaxed" twin where this Firefox validates relaxed SIMD (capabilities.js decides; both give the same bits)
    assert.match(r.info.build, mt ? /^simd-mt(-relaxed)?$/ : /^simd(-relaxed)?$/, 'auto picks the threaded build when isolated');
    const backend = mt ? 'wasm-mt-2t' : 'wasm-simd';
    let same = 0;
    r.out.forEach((o, i) => {
      if (o.text === want[i]) same++;
      else console.log(`  differs for ${JSON.stringify(o.prompt)}:\n    wasm   ${JSON.stringify(o.text)}\n    native ${JSON.stringify(want[i])}`);
    });
    add(backend, model, 'greedy_match_prompts', same);
    assert.equal(same, prompts.length);
    const tps = r.out.map((o) => o.stats.decodeTokPerSec).sort((a, b) => a - b)[Math.floor(r.out.length / 2)];
    console.log(`  ${model}: ${r.info.build} ${r.info.threads} thread(s) ${tps.toFixed(1)} tok/s`);
    add(backend, model, 'decode_tok_s', tps);
    add(backend, model, 'ttft_ms', r.out[0].stats.timeToFirstTokenMs);
    add(backend, model, 'heap_bytes', r.out[0].stats.heapBytes);
  });
});

test('SIMD single thread: speed and the same text', async () => {
  const model = testModels()[0];
  const want = prompts.slice(0, 2).map((p) => nativeGreedy(model, p));
  const r = await page.evaluate((u, ps, n) => lbt.greedy(u, ps, n, { backend: 'wasm-simd' }), `${srv.url}/models/${model}`, prompts.slice(0, 2), N_GEN);
  assert.match(r.info.build, /^simd(-relaxed)?$/);
  r.out.forEach((o, i) => assert.equal(o.text, want[i]));
  const tps = Math.max(...r.out.map((o) => o.stats.decodeTokPerSec));
  console.log(`  ${model}: ${r.info.build} 1 thread ${tps.toFixed(1)} tok/s`);
  add('wasm-simd', model, 'decode_tok_s', tps);
});

test('offline reload from storage', async () => {
  const model = testModels()[0];
  const u = `${srv.url}/models/${model}`;
  srv.setOffline(true);
  try {
    const r = await page.evaluate((x, p, n) => lbt.greedy(x, [p], n, { backend: 'wasm-simd' }), u, prompts[0], N_GEN);
    assert.equal(r.info.download.source, r.info.storage);
    assert.notEqual(r.info.storage, 'none');
    assert.equal(r.out[0].text, nativeGreedy(model, prompts[0]));
    console.log(`  offline load from ${r.info.storage} in ${r.info.loadMs.toFixed(0)} ms`);
    add('wasm-simd', model, 'offline_load_ms', r.info.loadMs);
  } finally {
    srv.setOffline(false);
  }
});

// Firefox ESR sometimes freezes in the nested `new Worker` of the threaded build's pthread pool (docs/web.md); before
// load() restarted frozen workers, one start in 20-80 hung for ever.  Twenty starts in a row must all reach the
// threaded build; the restarts it took are printed and recorded.
test('the threaded build starts 20 times in a row (frozen starts are restarted)', async () => {
  const model = testModels()[0];
  const r = await page.evaluate(async (u) => {
    const runs = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      let restarts = 0;
      const rep = await lowbit.load(u, { preflightOnly: true, threads: 2, onProgress: (p) => { if (p.phase === 'restart') restarts++; } });
      runs.push({ build: rep.build, restarts, ms: performance.now() - t0, tried: rep.buildsTried });
    }
    return runs;
  }, `${srv.url}/models/${model}`);
  const restarts = r.reduce((n, x) => n + x.restarts, 0);
  const ms = r.map((x) => x.ms).sort((a, b) => a - b);
  console.log(`  20 starts: ${restarts} restart(s); start-up median ${ms[10].toFixed(0)} ms, max ${ms[19].toFixed(0)} ms`);
  for (const x of r) {
    assert.match(x.build, /^simd-mt(-relaxed)?$/);
    assert.equal(x.tried.length, x.restarts, 'each restart is kept in buildsTried');
  }
  add('wasm-mt-2t', model, 'startup_restarts_of_20', restarts);
  add('wasm-mt-2t', model, 'startup_median_ms', ms[10]);
});

test('chat example: load, prompt, stream, stop, screenshot', async () => {
  const shots = path.join(repoRoot, 'build/screenshots');
  mkdirSync(shots, { recursive: true });
  const p = await browser.newPage();
  try {
    const r = await driveChat({
      goto: (u) => p.goto(u),
      waitFor: (fn) => p.waitForFunction(fn, { timeout: 120000, polling: 100 }),
      eval: (fn) => p.evaluate(fn),
      fill: (sel, v) => p.evaluate((s, x) => { document.querySelector(s).value = x; }, sel, v),
      // A DOM click: puppeteer's mouse click over BiDi sometimes lands before Firefox has laid the page out.
      click: (sel) => p.evaluate((s) => document.querySelector(s).click(), sel),
      shot: (file) => p.screenshot({ path: file }),
    }, srv.url, path.join(shots, 'web-chat-firefox.png'));
    console.log(`  streamed ${r.text.length} chars before stop; ${r.status}`);
  } finally {
    await p.close();
  }
});
