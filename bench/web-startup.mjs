// Start-up stress of the threaded web build: N loads in a row (preflight only, so each one starts the build in a
// fresh worker and stops before the download), counting the restarts of frozen starts (docs/web.md) and loads that
// never finished.  The browser suite runs 20 starts in Firefox; this is the long version.
//
//   node bench/web-startup.mjs [--browser firefox|chromium] [--n 200] [--backend auto] [--model techdocs-28M-Q4_K_M.gguf]
//
// Needs `make web` (tests/browser/run.sh does it) and the npm packages of the browser suite.  Figures go to
// build/bench/results.duckdb (browser_results, metrics startup_*).

import { parseArgs } from 'node:util';
import puppeteer from 'puppeteer-core';
import { chromium } from 'playwright-core';
import { startServer } from '../tests/browser/server.mjs';
import { CHROMIUM_ARGS, HARNESS, freshProfileDir, record } from '../tests/browser/lib.mjs';

const { values: a } = parseArgs({ options: {
  browser: { type: 'string', default: 'firefox' }, n: { type: 'string', default: '200' },
  backend: { type: 'string', default: 'auto' }, model: { type: 'string', default: 'techdocs-28M-Q4_K_M.gguf' },
} });
const n = Number(a.n);
const srv = await startServer();
let close, page, version;
if (a.browser === 'firefox') {
  const b = await puppeteer.launch({ browser: 'firefox', executablePath: '/usr/bin/firefox-esr', headless: true,
    userDataDir: freshProfileDir('firefox'), protocolTimeout: 600000 });
  version = (await b.version()).replace(/^Firefox\//i, '');
  page = await b.newPage();
  close = () => b.close();
} else {
  const ctx = await chromium.launchPersistentContext(freshProfileDir('chromium'), { executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
  version = ctx.browser()?.version() || '';
  page = await ctx.newPage();
  close = () => ctx.close();
}
await page.goto(srv.url + HARNESS);
await page.waitForFunction(() => window.lbtReady === true);

const ms = [];
let restarts = 0, hung = 0, failed = 0;
const builds = {};
for (let i = 0; i < n; i++) {
  // A load that has not finished after 60 s counts as hung (the freeze the restarts are there to catch, or a new one).
  const r = await page.evaluate(async ([u, backend]) => {
    const t0 = performance.now();
    let re = 0;
    const load = lowbit.load(u, { backend, preflightOnly: true, onProgress: (p) => { if (p.phase === 'restart') re++; } })
      .then((rep) => ({ ok: true, build: rep.build, restarts: re, ms: performance.now() - t0 }), (e) => ({ ok: false, error: e.message, restarts: re }));
    const late = new Promise((res) => setTimeout(() => res({ ok: false, hung: true, restarts: re }), 60000));
    return Promise.race([load, late]);
  }, [`${srv.url}/models/${a.model}`, a.backend]);
  restarts += r.restarts;
  if (r.hung) hung++;
  else if (!r.ok) { failed++; console.log(`start ${i}: ${r.error}`); }
  else { ms.push(r.ms); builds[r.build] = (builds[r.build] || 0) + 1; }
  if (r.restarts || !r.ok) console.log(`start ${i}: ${r.hung ? 'hung' : r.ok ? `${r.build} after ${r.restarts} restart(s), ${r.ms.toFixed(0)} ms` : 'failed'}`);
}
ms.sort((x, y) => x - y);
const q = (f) => ms.length ? ms[Math.min(ms.length - 1, Math.floor(f * ms.length))] : NaN;
console.log(`${a.browser} ${version}, ${n} starts (${a.backend}): builds ${JSON.stringify(builds)}; ${restarts} restart(s), ${hung} hung, ${failed} failed;` +
  ` start-up median ${q(0.5).toFixed(0)} ms, p95 ${q(0.95).toFixed(0)} ms, max ${q(1).toFixed(0)} ms`);
const row = (metric, value) => ({ browser: a.browser, browserVersion: version, backend: `startup-${a.backend}`, model: a.model, metric, value });
await record([row('startup_n', n), row('startup_restarts', restarts), row('startup_hung', hung), row('startup_median_ms', q(0.5))])
  .catch((e) => console.log('recording to DuckDB failed:', e.message));
await close();
await srv.close();
process.exit(hung || failed ? 1 : 0);
