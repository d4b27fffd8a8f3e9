// The engine's dedicated module Worker: starts a wasm build, preflights, loads the model and streams tokens to the page.
//
// Messages in:  load {options}, generate {id, prompt | messages, options}, cancel {id}, stats, unload, abort-load, evict, list
// Messages out: progress, alive (while a build starts), ready, token {id, piece, token}, done {id, stats}, error {id, message, code}, result {id, value}

import { Core } from './core.js';
import { fetchHead, fetchModel, openStore, storageKey } from './loader.js';
import { decide } from './preflight.js';

let core = null;
let build = null;
let loadAbort = null;
let current = null;   // the generation in progress: { id, cancelled }
let lastStats = null;
let loadInfo = null;

const post = (m) => self.postMessage(m);

// Yields to the event loop so that cancel messages are seen between tokens; faster than setTimeout(0), which is clamped.
const chan = new MessageChannel();
const waiting = [];
chan.port1.onmessage = () => waiting.shift()?.();
const yieldNow = () => new Promise((r) => { waiting.push(r); chan.port2.postMessage(0); });

// Each build announces itself ('starting'), and the worker posts 'alive' every 500 ms while the build starts up, so
// that the page can tell a slow start (a big .wasm on a slow network: the event loop still turns) from a frozen one
// (Firefox ESR sometimes never returns from the nested `new Worker` of the pthread pool; docs/web.md): the page
// then terminates this worker and tries again in a fresh one (index.js).
async function instantiate(chain, wasmBase, threads) {
  const tried = [];
  const alive = setInterval(() => post({ type: 'alive' }), 500);
  try {
    for (const b of chain) {
      const url = new URL(`lowbit-${b}.mjs`, wasmBase).href;
      post({ type: 'progress', phase: 'starting', build: b, loaded: 0, total: 0 });
      try {
        const factory = (await import(url)).default;
        const M = await factory({
          locateFile: (p) => new URL(p, wasmBase).href,
          mainScriptUrlOrBlob: url,
          // The threaded builds make their pthread pool at start-up (Makefile): lb_pool needs threads - 1 workers.
          // Never 0: emscripten 3.1.6 then waits for ever for an empty pool to load.
          lbPool: Math.max(1, threads - 1),
          print: (t) => post({ type: 'log', level: 'info', text: t }),
          printErr: (t) => post({ type: 'log', level: 'warn', text: t }),
        });
        return { core: new Core(M), build: b, tried };
      } catch (e) {
        tried.push({ build: b, error: String(e && e.message || e) });
      }
    }
  } finally {
    clearInterval(alive);
  }
  throw Object.assign(new Error('no WebAssembly build could be started: ' + tried.map((t) => `${t.build}: ${t.error}`).join('; ')), { code: 'NO_BUILD' });
}

// The GGUF header, enough for lb_plan_from_gguf: from storage when the file is there (offline), else by Range requests.
async function planFromHeader(url, store, key, planArgs, signal) {
  const meta = await store.meta(key);
  let stored = null;
  if (meta && meta.complete && meta.url === url) {
    const f = await store.file(key);
    stored = { size: meta.size, read: (n) => f.read(0, Math.min(n, meta.size)), close: () => f.close() };
  }
  const requests = [];
  try {
    let n = 1 << 20;
    for (let round = 0; round < 8; round++) {
      let bytes;
      if (stored) bytes = stored.read(n);
      else {
        const h = await fetchHead(url, n, signal);
        requests.push({ range: `bytes=0-${n - 1}`, ranged: h.ranged, got: h.bytes.length });
        bytes = h.bytes;
      }
      const plan = core.plan(bytes, planArgs);
      if (plan.status === 0) return { plan, requests, fromStorage: !!stored, bytes };
      if (plan.status === 8 /* LB_ERR_RANGE */ && plan.bytes_needed > bytes.length && bytes.length === n) {
        n = plan.bytes_needed;
        continue;
      }
      throw Object.assign(new Error(`preflight: ${url} is not a model lowbit can run: ${plan.error || plan.status_str}`), { code: 'PREFLIGHT_FORMAT' });
    }
    throw Object.assign(new Error(`preflight: the GGUF header of ${url} is larger than expected`), { code: 'PREFLIGHT_FORMAT' });
  } finally {
    stored?.close();
  }
}

async function load(o) {
  const t0 = performance.now();
  loadAbort = new AbortController();
  const signal = loadAbort.signal;
  const inst = await instantiate(o.chain, o.wasmBase, o.threads);
  core = inst.core;
  build = inst.build;
  post({ type: 'progress', phase: 'wasm', build, loaded: 0, total: 0 });
  const threads = build.startsWith('simd-mt') ? o.threads : 1;

  const { store, why: storeWhy } = await openStore(o.storage);
  const key = o.cacheKey || storageKey(o.url);
  const planArgs = { budget: o.budget, threads, batch: o.batch || 0, minCtx: o.contextLength, maxCtx: o.contextLength };
  let { plan, requests, fromStorage, bytes } = await planFromHeader(o.url, store, key, planArgs, signal);
  if (!o.contextExplicit && plan.n_ctx_train > 0 && o.contextLength > plan.n_ctx_train) {
    // The profile's default context is a wish, not a reason to run past what the model was trained on.
    o.contextLength = plan.n_ctx_train;
    plan = core.plan(bytes, { ...planArgs, minCtx: o.contextLength, maxCtx: o.contextLength });
  }
  const choice = decide(plan, { budget: o.budget, budgetWhy: o.budgetWhy, contextLength: o.contextLength,
    minContext: o.minContext, kvType: o.kvType });
  post({ type: 'progress', phase: 'preflight', loaded: 0, total: plan.file_bytes, plan: choice });
  if (o.preflightOnly) return { build, buildsTried: inst.tried, preflight: choice, headerRequests: requests };

  let lastPosted = -Infinity, lastPhase = '';
  const dl = await fetchModel(o.url, {
    store, key, sha256: o.sha256, signal, chunk: o.chunk, retries: o.retries ?? 2, stallMs: o.stallMs ?? 30000,
    reserve: (n) => {
      if (n !== plan.file_bytes) throw new Error(`the server's file is ${n} bytes but its header says ${plan.file_bytes}`);
      core.reserve(n);
    },
    sink: (at, bytes) => core.write(at, bytes),
    // The network hands over ~64 KB pieces; one message per MiB is plenty for a progress bar.
    onProgress: (p) => {
      if (p.loaded - lastPosted >= 1 << 20 || p.loaded === p.total || p.phase !== lastPhase) {
        lastPosted = p.loaded;
        lastPhase = p.phase;
        post({ type: 'progress', ...p });
      }
    },
  });
  const t1 = performance.now();
  const info = core.loadModel();
  core.newSession({ nCtx: choice.nCtx, threads, batch: o.batch || 0, kvK: choice.kvK, kvV: choice.kvV });
  loadInfo = {
    build, buildsTried: inst.tried, threads, model: info, preflight: choice, headerRequests: requests,
    headerFromStorage: fromStorage, storage: store.kind, storageWhy: storeWhy, download: dl,
    loadMs: performance.now() - t0, fetchMs: t1 - t0, heapBytes: core.heapBytes(),
  };
  return loadInfo;
}

async function generate(id, msg) {
  const o = msg.options || {};
  let prompt = msg.prompt;
  let stop = o.stop ? [].concat(o.stop) : [];
  if (msg.messages) {
    const c = core.chatPrompt(msg.messages);
    prompt = c.prompt;
    stop = stop.concat(c.stop);
  }
  current = { id, cancelled: false };
  const t0 = performance.now();
  let tFirst = null;
  let tLast = null;
  let n = 0;
  let lastYield = performance.now();
  const dec = new TextDecoder();
  try {
    core.begin(prompt, { ...o, stop, addSpecial: o.addSpecial });
    for (;;) {
      if (current.cancelled) break;
      const ev = core.step();
      if (!ev) break;
      const now = performance.now();
      if (ev.token >= 0) {
        if (tFirst === null) tFirst = now;
        tLast = now;
        n++;
      }
      post({ type: 'token', id, token: ev.token, piece: dec.decode(ev.bytes) });
      // A turn of the event loop per token costs ~15% of decode speed in Chromium; every 20 ms keeps cancel prompt enough.
      if (now - lastYield >= 20) {
        await yieldNow();
        lastYield = performance.now();
      }
    }
  } finally {
    const c = core.genStats();
    core.endGen();
    lastStats = {
      build, threads: loadInfo?.threads, nPrompt: c.n_prompt, nGenerated: c.n_gen,
      finishReason: current.cancelled ? 'cancelled' : c.finish_reason,
      promptMs: c.prompt_ms, timeToFirstTokenMs: tFirst === null ? null : tFirst - t0,
      // Decode speed counts the tokens after the first, over the time since the first: prefill excluded.
      decodeTokPerSec: n > 1 ? (n - 1) / ((tLast - tFirst) / 1000) : null,
      promptTokPerSec: c.prompt_ms > 0 ? c.n_prompt / (c.prompt_ms / 1000) : null,
      heapBytes: core.heapBytes(),
    };
    current = null;
  }
  return lastStats;
}

self.onmessage = async (e) => {
  const m = e.data;
  try {
    switch (m.type) {
      case 'load': post({ type: 'result', id: m.id, value: await load(m.options) }); break;
      case 'abort-load': loadAbort?.abort(); break;
      case 'generate': post({ type: 'done', id: m.id, stats: await generate(m.id, m) }); break;
      case 'cancel': if (current && (m.id == null || current.id === m.id)) current.cancelled = true; break;
      case 'stats': post({ type: 'result', id: m.id, value: { load: loadInfo, last: lastStats, heapBytes: core ? core.heapBytes() : 0 } }); break;
      case 'unload': core?.unload(); core = null; post({ type: 'result', id: m.id, value: true }); break;
      case 'evict': {
        const { store } = await openStore(m.storage);
        const keys = m.all ? (await store.list()).map((x) => x.key) : [m.cacheKey || storageKey(m.url)];
        for (const k of keys) await store.remove(k);
        post({ type: 'result', id: m.id, value: keys.length });
        break;
      }
      case 'list': {
        const { store } = await openStore(m.storage);
        post({ type: 'result', id: m.id, value: { storage: store.kind, models: await store.list() } });
        break;
      }
      default: throw new Error(`unknown message '${m.type}'`);
    }
  } catch (err) {
    post({ type: 'error', id: m.id, message: String(err && err.message || err), code: err && err.code || 'ERROR', details: err && err.details });
  }
};
