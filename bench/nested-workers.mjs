// A reduced test case of the freeze docs/web.md describes: in Firefox ESR, a worker's `new Worker()` sometimes never
// returns.  No WebAssembly and no lowbit code: an outer worker (classic or module) creates K nested workers (classic
// or module), N rounds, each outer worker terminated after its round; a round whose outer worker goes silent for 5 s
// counts as a hang, with the `new Worker()` it was in.
//
//   node bench/nested-workers.mjs [--n 150] [--k 4] [--outer module|classic] [--inner classic|module] [--clean] [--pause MS]
//
// --clean: the outer worker terminates its nested workers itself first; --pause: milliseconds between rounds.

import { parseArgs } from 'node:util';
import puppeteer from 'puppeteer-core';
import { startServer } from '../tests/browser/server.mjs';
import { freshProfileDir } from '../tests/browser/lib.mjs';

const { values: a } = parseArgs({ options: {
  n: { type: 'string', default: '150' }, k: { type: 'string', default: '4' },
  outer: { type: 'string', default: 'module' }, inner: { type: 'string', default: 'classic' },
  clean: { type: 'boolean', default: false }, pause: { type: 'string', default: '0' },
} });
const srv = await startServer();
const browser = await puppeteer.launch({ browser: 'firefox', executablePath: '/usr/bin/firefox-esr', headless: true,
  userDataDir: freshProfileDir('firefox'), protocolTimeout: 600000 });
const version = await browser.version();
const page = await browser.newPage();
await page.goto(`${srv.url}/bench/nested-workers/page.html`);
await page.waitForFunction(() => window.ready === true);
let hangs = 0;
const where = {};
for (let i = 0; i < Number(a.n); i++) {
  const r = await page.evaluate((k, o, n, c) => window.round(k, o, n, c), Number(a.k), a.outer, a.inner, a.clean);
  if (r !== 'ok') {
    hangs++;
    where[r] = (where[r] || 0) + 1;
  }
  if (Number(a.pause)) await new Promise((res) => setTimeout(res, Number(a.pause)));
}
console.log(`${version}: outer ${a.outer}, inner ${a.inner}, ${a.k} nested per round${a.clean ? ', cleaned up' : ''}` +
  `${Number(a.pause) ? `, ${a.pause} ms apart` : ''}: ${hangs} of ${a.n} rounds hung ${JSON.stringify(where)}`);
await browser.close();
await srv.close();
