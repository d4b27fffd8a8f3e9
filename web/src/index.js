// The lowbit web SDK: load(url, options) -> an Engine whose generate()/chat() stream text from a dedicated Worker.

import { buildChain, detectCapabilities } from './capabilities.js';
import { loadProfiles, memoryBudget, resolveProfile } from './profiles.js';

export { detectCapabilities, buildChain } from './capabilities.js';
export { loadProfiles, resolveProfile, memoryBudget } from './profiles.js';

const DEFAULT_WASM_BASE = new URL('../../build/web/', import.meta.url);

/** Errors from the engine carry a code: 'PREFLIGHT' (does not fit), 'ABORTED', 'NO_BUILD', 'ERROR'. */
export class LowbitError extends Error {
  constructor(message, code = 'ERROR', details) {
    super(message);
    this.name = code === 'PREFLIGHT' ? 'PreflightError' : 'LowbitError';
    this.code = code;
    this.details = details;
  }
}

// One Worker and its request/response bookkeeping.
class Channel {
  constructor(worker) {
    this.worker = worker;
    this.next = 1;
    this.pending = new Map();   // id -> { resolve, reject, onToken, onProgress }
    this.onProgress = null;
    this.lastSeen = performance.now();   // the last message of any kind: the start-up watchdog's sign of life
    worker.onmessage = (e) => {
      this.lastSeen = performance.now();
      this.dispatch(e.data);
    };
    worker.onerror = (e) => {
      const err = new LowbitError(`the engine worker failed: ${e.message || 'script error'}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }

  dispatch(m) {
    if (m.type === 'alive') return undefined;
    if (m.type === 'progress') return this.onProgress?.(m);
    if (m.type === 'log') return m.level === 'warn' ? console.warn('[lowbit]', m.text) : console.debug('[lowbit]', m.text);
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === 'token') return p.onToken?.(m);
    this.pending.delete(m.id);
    if (m.type === 'error') p.reject(new LowbitError(m.message, m.code, m.details));
    else p.resolve(m.type === 'done' ? m.stats : m.value);
  }

  request(msg, extra = {}) {
    const id = this.next++;
    return {
      id,
      promise: new Promise((resolve, reject) => {
        this.pending.set(id, { resolve, reject, ...extra });
        this.worker.postMessage({ ...msg, id });
      }),
    };
  }

  call(msg) {
    return this.request(msg).promise;
  }
}

function abortError(signal) {
  const r = signal && signal.reason;
  return new LowbitError(r && r.message ? r.message : 'aborted', 'ABORTED');
}

export class Engine {
  constructor(channel, info, caps, chain, profile, budget) {
    this._ch = channel;
    this._busy = false;
    /** What was chosen and why: build, threads, preflight (KV types, context), storage, download. */
    this.info = { ...info, capabilities: caps, fallback: chain.steps, profile, budget };
  }

  /**
   * Streams the continuation of prompt as text pieces (whole UTF-8 characters).
   * options: { maxTokens=128, temperature=0, topK, topP, minP, repeatPenalty, seed, stop: string[], signal }
   */
  generate(prompt, options = {}) {
    return this._stream({ type: 'generate', prompt }, options);
  }

  /**
   * OpenAI-shaped chat: messages [{ role, content }].  With options.stream === false (the default) resolves to
   * { choices: [{ message: { role: 'assistant', content }, finish_reason }], usage }; with stream: true returns an
   * async iterator of chunks { choices: [{ delta: { content } }] }.
   */
  chat(messages, options = {}) {
    const it = this._stream({ type: 'generate', messages }, options);
    if (options.stream) {
      return (async function* () {
        for await (const piece of it) yield { object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: piece } }] };
      })();
    }
    return (async () => {
      let text = '';
      for await (const piece of it) text += piece;
      const s = this.lastStats;
      return {
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: s.finishReason === 'stop' ? 'stop' : s.finishReason }],
        usage: { prompt_tokens: s.nPrompt, completion_tokens: s.nGenerated, total_tokens: s.nPrompt + s.nGenerated },
      };
    })();
  }

  _stream(msg, options) {
    const { signal, ...opts } = options;
    const ch = this._ch;
    const engine = this;
    return (async function* () {
      if (!ch) throw new LowbitError('the engine was unloaded');
      if (engine._busy) throw new LowbitError('a generation is already running on this engine; await it or cancel it first');
      if (signal?.aborted) throw abortError(signal);
      engine._busy = true;
      const queue = [];
      let wake = null;
      const push = (x) => { queue.push(x); wake?.(); wake = null; };
      const req = ch.request({ ...msg, options: { temperature: 0, ...opts } }, { onToken: (m) => push({ piece: m.piece }) });
      req.promise.then((stats) => push({ done: stats }), (err) => push({ error: err }));
      const cancel = () => ch.worker.postMessage({ type: 'cancel', id: req.id });
      signal?.addEventListener('abort', cancel, { once: true });
      let finished = false;
      try {
        for (;;) {
          if (!queue.length) await new Promise((r) => { wake = r; });
          const x = queue.shift();
          if (x.error) throw x.error;
          if (x.done) {
            engine.lastStats = x.done;
            finished = true;
            if (signal?.aborted) throw abortError(signal);
            return;
          }
          if (x.piece) yield x.piece;
        }
      } finally {
        signal?.removeEventListener('abort', cancel);
        if (!finished) {
          // The consumer left early (break / return): stop the worker and wait for it to settle.
          cancel();
          await req.promise.catch(() => {});
        }
        engine._busy = false;
      }
    })();
  }

  /** Time to first token, tok/s and memory of the last generation, plus how the engine was loaded. */
  async stats() {
    if (!this._ch) return { last: this.lastStats ?? null, load: null };
    return this._ch.call({ type: 'stats' });
  }

  /** Frees the model and terminates the worker.  The stored copy of the model stays (see evict()). */
  async unload() {
    if (!this._ch) return;
    const ch = this._ch;
    this._ch = null;
    try {
      await Promise.race([ch.call({ type: 'unload' }), new Promise((r) => setTimeout(r, 2000))]);
    } finally {
      ch.worker.terminate();
    }
  }
}

function newWorker() {
  return new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'lowbit-engine' });
}

/**
 * Loads a GGUF model into a new engine.
 * options: {
 *   backend: 'auto' | 'wasm-mt' | 'wasm-simd' | 'wasm' | a build name ('simd-mt-relaxed', 'simd-mt', 'simd-relaxed',
 *            'simd', 'nosimd': that build first, then its fallbacks), onProgress({ phase, loaded, total }), signal,
 *   memoryBudget (bytes), profile (name or overrides), contextLength, minContext, kvType ('auto'|'f16'|'q8'|'q4'|'q3'|'q2'),
 *   threads, sha256 (hex), storage ('opfs'|'cache'|'none'), cacheKey, retries, stallMs, wasmBase (URL of build/web/),
 *   preflightOnly (stop after the preflight and resolve with its report), persist (default true),
 *   startupStallMs (a worker silent this long while a build starts is restarted; default 5000)
 * }
 */
export async function load(modelUrl, options = {}) {
  const { signal, onProgress } = options;
  if (signal?.aborted) throw abortError(signal);
  const url = new URL(modelUrl, globalThis.location?.href).href;
  const caps = options.capabilities || await detectCapabilities();
  const profiles = await loadProfiles(options.profilesUrl);
  const profile = resolveProfile(profiles, caps, options.profile);
  const budget = memoryBudget(caps, profile, options.memoryBudget);
  const chain = buildChain(caps, options.backend || 'auto');
  const pv = profile.values;
  const threads = options.threads ?? Math.max(1, Math.min(pv.maxThreads, caps.hardwareConcurrency + pv.threadsFromCores));
  // Firefox asks the user before granting persistence, so the answer may never come: do not wait for it.
  let persisted = 'pending';
  if (options.persist !== false && navigator.storage?.persist) {
    navigator.storage.persist().then((v) => { persisted = v; }, () => { persisted = false; });
  } else persisted = null;

  const loadMsg = {
    type: 'load',
    options: {
      url, wasmBase: String(options.wasmBase ? new URL(options.wasmBase, globalThis.location?.href) : DEFAULT_WASM_BASE),
      budget: budget.bytes, budgetWhy: budget.why, threads,
      contextLength: options.contextLength ?? pv.contextLength, contextExplicit: options.contextLength != null,
      minContext: options.minContext ?? pv.minContext, kvType: options.kvType || 'auto', batch: options.batch,
      sha256: options.sha256, storage: options.storage || pv.storage, cacheKey: options.cacheKey,
      retries: options.retries, stallMs: options.stallMs, chunk: (pv.chunkMiB || 4) << 20, preflightOnly: !!options.preflightOnly,
    },
  };
  // A worker that freezes while a build starts is terminated and the load tried again in a fresh one: the same build
  // once more (the freeze seen in Firefox is intermittent), then without it.  Each freeze is kept in buildsTried.
  let builds = chain.chain.slice();
  const frozen = [];   // { build, error } per restart
  for (;;) {
    const ch = new Channel(newWorker());
    ch.onProgress = (p) => {
      if (p.phase === 'starting') ch.starting = p.build;
      else ch.started = true;
      onProgress?.(p);
    };
    const abort = () => ch.worker.postMessage({ type: 'abort-load' });
    signal?.addEventListener('abort', abort, { once: true });
    const watchdog = startupWatchdog(ch, options.startupStallMs ?? STARTUP_STALL_MS);
    try {
      const req = ch.call({ ...loadMsg, options: { ...loadMsg.options, chain: builds } });
      const aborted = new Promise((_, rej) => signal?.addEventListener('abort', () => rej(abortError(signal)), { once: true }));
      aborted.catch(() => {});   // an abort after the load settled is nobody's error
      const info = await Promise.race([req, aborted, watchdog.promise]);
      info.buildsTried = [...frozen, ...(info.buildsTried || [])];
      if (options.preflightOnly) {
        ch.worker.terminate();
        return { ...info, capabilities: caps, fallback: chain.steps, profile, budget };
      }
      const engine = new Engine(ch, info, caps, chain, profile, budget);
      Object.defineProperty(engine.info, 'persisted', { enumerable: true, get: () => persisted });
      return engine;
    } catch (e) {
      ch.worker.terminate();
      if (e.code !== 'STALLED') throw e;
      const b = e.details.build || builds[0];   // the build being started (null details: before its import)
      frozen.push({ build: b, error: e.message });
      if (frozen.filter((f) => f.build === b).length >= 2) builds = builds.slice(builds.indexOf(b) + 1);
      if (!builds.length || frozen.length > chain.chain.length + 2) {
        throw new LowbitError(`no WebAssembly build could be started: ${frozen.map((f) => `${f.build}: ${f.error}`).join('; ')}`,
          'NO_BUILD', { buildsTried: frozen });
      }
      onProgress?.({ phase: 'restart', build: b, reason: e.message, loaded: 0, total: 0 });
    } finally {
      watchdog.stop();
      signal?.removeEventListener('abort', abort);
    }
  }
}

// How long a worker may stay silent before its first build has started: it posts 'alive' every 500 ms while a build
// starts (even while the .wasm downloads), so silence means its thread is stuck, not slow.
const STARTUP_STALL_MS = 5000;

function startupWatchdog(ch, ms) {
  let timer = null;
  const promise = new Promise((_, reject) => {
    timer = setInterval(() => {
      if (ch.started) return clearInterval(timer);
      const quiet = performance.now() - ch.lastSeen;
      if (quiet < ms) return;
      clearInterval(timer);
      const what = ch.starting ? `the ${ch.starting} build` : 'the engine worker';
      reject(new LowbitError(`${what} froze while starting (no sign of life for ${Math.round(quiet)} ms)`,
        'STALLED', { build: ch.starting || null }));
    }, Math.min(1000, ms / 4));
  });
  promise.catch(() => {});
  return { promise, stop: () => clearInterval(timer) };
}

// Storage management runs in a short-lived worker, because OPFS sync handles exist only there.
async function storageCall(msg) {
  const ch = new Channel(newWorker());
  try {
    return await ch.call(msg);
  } finally {
    ch.worker.terminate();
  }
}

/** Removes the stored copy of one model (by URL or cacheKey), or of all models with { all: true }.  Resolves to the count removed. */
export function evict(modelUrl, options = {}) {
  const url = modelUrl ? new URL(modelUrl, globalThis.location?.href).href : null;
  return storageCall({ type: 'evict', url, all: !!options.all, cacheKey: options.cacheKey, storage: options.storage || 'opfs' });
}

/** The models in storage: [{ url, size, sha256, complete, received, storedAt, key }]. */
export function listStored(options = {}) {
  return storageCall({ type: 'list', storage: options.storage || 'opfs' });
}
