// WebKit (selenium-webdriver + WebKitWebDriver, MiniBrowser; needs an X display: tests/browser/run.sh uses xvfb-run):
// no SharedArrayBuffer and no WebGPU, so 'auto' must fall back to the single-thread SIMD build with correct output (acceptance 5).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Builder, By } from 'selenium-webdriver';
import { repoRoot, startServer } from './server.mjs';
import { HARNESS, N_GEN, driveChat, nativeGreedy, oraclePrompts, record, startWebKitDriver, testModels } from './lib.mjs';

const haveDisplay = !!process.env.DISPLAY;
let srv, wd, driver, version;
const rows = [];
const B = 'webkit';
const add = (backend, model, metric, value) => { if (value != null && Number.isFinite(value)) rows.push({ browser: B, browserVersion: version, backend, model, metric, value }); };

// Runs an async function in the page: its source is sent, the result comes back through WebDriver's async-script callback.
async function run(fn, ...args) {
  const r = await driver.executeAsyncScript(
    `const done = arguments[arguments.length - 1];
     const f = ${fn.toString()};
     f(...${JSON.stringify(args)}).then((v) => done({ v }), (e) => done({ e: String(e && e.stack || e) }));`);
  if (r.e) throw new Error(r.e);
  return r.v;
}

before(async () => {
  if (!haveDisplay) return;
  srv = await startServer();
  wd = await startWebKitDriver(4444 + Math.floor(Math.random() * 1000));
  driver = await new Builder().usingServer(wd.url).withCapabilities({
    browserName: 'MiniBrowser',
    'webkitgtk:browserOptions': { binary: '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser', args: ['--automation'] },
  }).build();
  await driver.manage().setTimeouts({ script: 300000, pageLoad: 60000 });
  version = (await driver.getCapabilities()).get('browserVersion') || '';
  await driver.get(srv.url + HARNESS);
  for (let i = 0; i < 100 && !(await driver.executeScript('return window.lbtReady === true')); i++) await new Promise((r) => setTimeout(r, 100));
});

after(async () => {
  await record(rows).catch((e) => console.log('recording to DuckDB failed:', e.message));
  await driver?.quit().catch(() => {});
  wd?.stop();
  await srv?.close();
});

test('capability report: SIMD, no threads, no WebGPU', { skip: !haveDisplay && 'no DISPLAY (run under xvfb-run)' }, async () => {
  const caps = await run(() => lowbit.detectCapabilities());
  console.log('capabilities:', JSON.stringify({ ...caps, userAgent: undefined }));
  assert.equal(caps.engine, 'webkit');
  assert.equal(caps.simd, true);
  assert.equal(caps.threads, false);
  const chain = await run((c) => Promise.resolve(lowbit.buildChain(c)), caps);
  assert.equal(chain.chain[0], caps.relaxedSimd ? 'simd-relaxed' : 'simd');
  console.log('  fallback:', chain.steps.map((s) => `${s.build}: ${s.reason}`).join(' | '));
  add('caps', '', 'hardware_concurrency', caps.hardwareConcurrency);
  add('caps', '', 'threads', caps.threads ? 1 : 0);
});

const prompts = oraclePrompts();

for (const model of testModels()) {
  test(`greedy ${N_GEN} tokens = native lowbit, auto (single-thread fallback): ${model}`, { skip: !haveDisplay && 'no DISPLAY' }, async () => {
    const want = prompts.map((p) => nativeGreedy(model, p));
    const r = await run((u, ps, n) => lbt.greedy(u, ps, n, {}), `${srv.url}/models/${model}`, prompts, N_GEN);
    assert.match(r.info.build, /^simd(-relaxed)?$/);
    assert.equal(r.info.threads, 1);
    let same = 0;
    r.out.forEach((o, i) => {
      if (o.text === want[i]) same++;
      else console.log(`  differs for ${JSON.stringify(o.prompt)}:\n    wasm   ${JSON.stringify(o.text)}\n    native ${JSON.stringify(want[i])}`);
    });
    add('wasm-simd', model, 'greedy_match_prompts', same);
    assert.equal(same, prompts.length);
    const tps = r.out.map((o) => o.stats.decodeTokPerSec).sort((a, b) => a - b)[Math.floor(r.out.length / 2)];
    console.log(`  ${model}: simd 1 thread ${tps.toFixed(1)} tok/s, storage ${r.info.storage}`);
    add('wasm-simd', model, 'decode_tok_s', tps);
    add('wasm-simd', model, 'ttft_ms', r.out[0].stats.timeToFirstTokenMs);
    add('wasm-simd', model, 'heap_bytes', r.out[0].stats.heapBytes);
  });
}

test('chat example: load, prompt, stream, stop, screenshot', { skip: !haveDisplay && 'no DISPLAY' }, async () => {
  const shots = path.join(repoRoot, 'build/screenshots');
  mkdirSync(shots, { recursive: true });
  const waitFor = async (fn) => {
    const t0 = Date.now();
    while (!(await driver.executeScript(`return !!(${fn.toString()})()`))) {
      if (Date.now() - t0 > 120000) throw new Error(`timed out waiting for ${fn}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const r = await driveChat({
    goto: (u) => driver.get(u),
    waitFor,
    eval: (fn) => driver.executeScript(`return (${fn.toString()})()`),
    fill: (sel, v) => driver.executeScript('document.querySelector(arguments[0]).value = arguments[1]', sel, v),
    click: async (sel) => (await driver.findElement(By.css(sel))).click(),
    shot: async (file) => writeFileSync(file, Buffer.from(await driver.takeScreenshot(), 'base64')),
  }, srv.url, path.join(shots, 'web-chat-webkit.png'));
  console.log(`  streamed ${r.text.length} chars before stop; ${r.status}`);
});
