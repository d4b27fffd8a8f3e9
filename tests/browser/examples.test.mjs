// The example apps in Chromium: the chat app (load, prompt, stream, stop, screenshot) and the "mobile" app
// (preflight of several files under a small budget; the best fitting one is loaded and generates).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { repoRoot, startServer } from './server.mjs';
import { CHROMIUM_ARGS, driveChat, freshProfileDir } from './lib.mjs';

const SHOTS = path.join(repoRoot, 'build/screenshots');
let srv, ctx;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  srv = await startServer();
  ctx = await chromium.launchPersistentContext(freshProfileDir('examples'), { executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  await ctx?.close();
  await srv?.close();
});

function playwrightAdapter(page) {
  return {
    goto: (u) => page.goto(u),
    waitFor: (fn) => page.waitForFunction(fn, null, { timeout: 120000 }),
    eval: (fn) => page.evaluate(fn),
    fill: (sel, v) => page.fill(sel, v),
    click: (sel) => page.click(sel),
    shot: (file) => page.screenshot({ path: file }),
  };
}

test('chat example: load, prompt, stream, stop, screenshot', async () => {
  const page = await ctx.newPage();
  const r = await driveChat(playwrightAdapter(page), srv.url, path.join(SHOTS, 'web-chat-chromium.png'));
  console.log(`  streamed ${r.text.length} chars before stop; ${r.status}`);
  await page.close();
});

test('mobile example: a 40 MiB budget skips the files that do not fit and loads the best one that does', async () => {
  const page = await ctx.newPage();
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${srv.url}/web/examples/mobile/?budgetMiB=40&max=16`);
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120000 });
  const rows = await page.evaluate(() => [...document.querySelectorAll('#plans tr')].slice(1).map((r) => [r.cells[0].textContent, r.cells[1].className, r.cells[1].textContent]));
  console.log(rows.map((r) => `  ${r[0]}: ${r[2]}`).join('\n'));
  assert.equal(rows[0][1], 'nofit', 'the f16 file (54 MiB of weights) is refused');
  const res = await page.evaluate(() => window.mobileResult);
  assert.ok(res.chosen, 'something fits');
  const firstFit = rows.find((r) => r[1] === 'fit');
  assert.ok(res.chosen.url.endsWith(firstFit[0]), 'the best file that fits is the one loaded');
  assert.ok(res.loaded, 'and was loaded');
  await page.click('#go');
  await page.waitForFunction(() => document.body.dataset.done === 'true', null, { timeout: 120000 });
  const out = await page.evaluate(() => document.getElementById('out').textContent);
  assert.ok(out.length > 0);
  await page.screenshot({ path: path.join(SHOTS, 'web-mobile-chromium.png') });
  await page.close();
});
