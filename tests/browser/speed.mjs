// Decode speed in Chromium next to native lowbit, interleaved round by round (acceptance 2 of issue 6, measured by hand).
//
// node tests/browser/speed.mjs [ROUNDS] [BUILD...]   (default: 5 rounds of simd-relaxed simd simd-mt-relaxed simd-mt)
// Each round runs native `lowbit run -t 1` for 128 tokens (with the best kernel set, then capped at AVX2 by LB_ISA=avx2),
// then each build once (the "-mt" ones with 2 threads), on the same prompt; the engines stay loaded between rounds.
// Prints every round with the load average, then the median and the best round of each series (on a loaded machine the
// best is the steadier estimate of what the code can do).
// Environment: WEB_BUILD (default build/web) is where the builds are served from, LB_NATIVE the native binary,
// LB_SPEED_MODEL the model file under ../shared/models (default techdocs-28M-Q4_K_M.gguf).
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';
import { CHROMIUM_ARGS, HARNESS, NATIVE, freshProfileDir } from './lib.mjs';

const rounds = Number(process.argv[2] || 5);
const builds = process.argv.length > 3 ? process.argv.slice(3) : ['simd-relaxed', 'simd', 'simd-mt-relaxed', 'simd-mt'];
const model = process.env.LB_SPEED_MODEL || 'techdocs-28M-Q4_K_M.gguf';
const webBuild = (process.env.WEB_BUILD || 'build/web').replace(/\/$/, '');
const prompt = 'The kernel scheduler';
const N = 128;

function native(isa) {
  const env = { ...process.env };
  if (isa) env.LB_ISA = isa;
  else delete env.LB_ISA;
  const r = spawnSync(NATIVE, ['run', '-m', `../shared/models/${model}`, '-p', prompt, '-n', String(N), '--temp', '0',
    '--no-echo', '--ignore-eos', '-t', '1'], { encoding: 'utf8', env });
  const m = /generation \d+ tok, ([\d.]+) tok\/s/.exec(r.stderr);
  return m ? Number(m[1]) : NaN;
}

const median = (v) => { const s = v.filter(Number.isFinite).sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : NaN; };
const best = (v) => Math.max(...v.filter(Number.isFinite));

const srv = await startServer();
const ctx = await chromium.launchPersistentContext(freshProfileDir('chromium-speed'), { executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
try {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log('pageerror:', e.message));
  await page.goto(srv.url + HARNESS);
  await page.waitForFunction(() => window.lbtReady === true);
  const version = await page.evaluate(() => navigator.userAgent.match(/Chrom(e|ium)\/([\d.]+)/)?.[2] || '');
  const loaded = await page.evaluate(async ([url, base, bs]) => {
    window.speedEngines = {};
    const out = {};
    for (const b of bs) {
      const e = await lowbit.load(url, { backend: b, threads: b.startsWith('simd-mt') ? 2 : 1, wasmBase: base });
      window.speedEngines[b] = e;
      out[b] = { build: e.info.build, threads: e.info.threads };
    }
    return out;
  }, [`${srv.url}/models/${model}`, `${srv.url}/${webBuild}/`, builds]);
  console.log(`Chromium ${version}, ${model}, builds from ${webBuild}: ${JSON.stringify(loaded)}`);
  const res = { native: [], avx2: [] };
  for (const b of builds) res[b] = [];
  for (let r = 1; r <= rounds; r++) {
    res.native.push(native());
    res.avx2.push(native('avx2'));
    for (const b of builds) {
      const s = await page.evaluate(async ([bb, p, n]) => {
        const e = window.speedEngines[bb];
        for await (const piece of e.generate(p, { maxTokens: n, temperature: 0 })) void piece;
        return e.lastStats;
      }, [b, prompt, N]);
      res[b].push(s.decodeTokPerSec);
    }
    console.log(`round ${r}: native ${res.native.at(-1).toFixed(1)} (avx2 ${res.avx2.at(-1).toFixed(1)})` + builds.map((b) => `  ${b} ${res[b].at(-1).toFixed(1)}`).join('') +
      `  (load ${os.loadavg()[0].toFixed(2)})`);
  }
  for (const [label, f] of [['median', median], ['best', best]]) {
    const n = f(res.native), n2 = f(res.avx2);
    console.log(`${label}: native 1 thread ${n.toFixed(1)} tok/s (best set), ${n2.toFixed(1)} tok/s (LB_ISA=avx2)` +
      builds.map((b) => `; ${b} ${f(res[b]).toFixed(1)} tok/s = ${(100 * f(res[b]) / n).toFixed(1)}% / ` +
        `${(100 * f(res[b]) / n2).toFixed(1)}%`).join(''));
  }
  await page.evaluate(async () => { for (const e of Object.values(window.speedEngines)) await e.unload(); });
} finally {
  await ctx.close();
  await srv.close();
}
