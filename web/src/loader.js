// Model bytes from the network or from storage: Range header reads, streamed download with progress, resume, sha256, OPFS / Cache API.
// Runs inside the engine's Worker (OPFS sync access handles exist only in workers).

const DIR = 'lowbit-models';
const CACHE = 'lowbit-models-v1';

/** A storage key for a URL: the URL without query noise is not safe (signed URLs), so hash the whole string. */
export function storageKey(url) {
  let h1 = 0x811c9dc5, h2 = 0x01000193;
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) >>> 0;
  }
  const base = url.split(/[?#]/)[0].split('/').pop().replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80) || 'model';
  return `${base}.${h1.toString(16).padStart(8, '0')}${h2.toString(16).padStart(8, '0')}`;
}

export function hex(buf) {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// ------------------------------------------------------------------ storage back ends

/** OPFS: <key>.gguf holds the bytes (a prefix while incomplete), <key>.json the metadata. */
class OpfsStore {
  constructor(dir) {
    this.dir = dir;
    this.kind = 'opfs';
  }

  static async open() {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle(DIR, { create: true });
    // Fail here, not halfway through a download, when sync handles are missing (old Safari, main thread).
    const probe = await dir.getFileHandle('.probe', { create: true });
    if (typeof probe.createSyncAccessHandle !== 'function') throw new Error('OPFS sync access handles are not available');
    return new OpfsStore(dir);
  }

  async meta(key) {
    try {
      const f = await (await this.dir.getFileHandle(key + '.json')).getFile();
      return JSON.parse(await f.text());
    } catch {
      return null;
    }
  }

  async setMeta(key, m) {
    const h = await (await this.dir.getFileHandle(key + '.json', { create: true })).createSyncAccessHandle();
    try {
      const b = new TextEncoder().encode(JSON.stringify(m));
      h.truncate(0);
      h.write(b, { at: 0 });
      h.flush();
    } finally {
      h.close();
    }
  }

  /** A random-access file for key; close() when done. */
  async file(key) {
    const fh = await this.dir.getFileHandle(key + '.gguf', { create: true });
    const h = await fh.createSyncAccessHandle();
    return {
      size: () => h.getSize(),
      write: (bytes, at) => h.write(bytes, { at }),
      read: (at, len) => {
        const b = new Uint8Array(len);
        const n = h.read(b, { at });
        return n === len ? b : b.subarray(0, n);
      },
      truncate: (n) => h.truncate(n),
      flush: () => h.flush(),
      close: () => h.close(),
    };
  }

  async remove(key) {
    for (const ext of ['.gguf', '.json']) {
      try {
        await this.dir.removeEntry(key + ext);
      } catch { /* absent */ }
    }
  }

  async list() {
    const out = [];
    for await (const [name] of this.dir.entries()) {
      if (!name.endsWith('.json')) continue;
      const m = await this.meta(name.slice(0, -5));
      if (m) out.push({ ...m, key: name.slice(0, -5) });
    }
    return out;
  }
}

/** Cache API fallback: whole files only (no resume), an in-memory buffer while downloading. */
class CacheStore {
  constructor(cache) {
    this.cache = cache;
    this.kind = 'cache';
    this.parts = new Map();
  }

  static async open() {
    return new CacheStore(await caches.open(CACHE));
  }

  req(key, ext) {
    return new Request(`https://lowbit.invalid/${key}${ext}`);
  }

  async meta(key) {
    const r = await this.cache.match(this.req(key, '.json'));
    return r ? r.json() : null;
  }

  async setMeta(key, m) {
    if (m.complete) {
      const f = this.parts.get(key);
      if (f) await this.cache.put(this.req(key, '.gguf'), new Response(f.buf.slice(0, f.len)));
      this.parts.delete(key);
    }
    await this.cache.put(this.req(key, '.json'), new Response(JSON.stringify(m), { headers: { 'content-type': 'application/json' } }));
  }

  async file(key) {
    let f = this.parts.get(key);
    if (!f) {
      const r = await this.cache.match(this.req(key, '.gguf'));
      const buf = r ? new Uint8Array(await r.arrayBuffer()) : new Uint8Array(0);
      f = { buf, len: buf.length };
      this.parts.set(key, f);
    }
    return {
      size: () => f.len,
      write: (bytes, at) => {
        if (at + bytes.length > f.buf.length) {
          const nb = new Uint8Array(Math.max(at + bytes.length, f.buf.length * 2));
          nb.set(f.buf.subarray(0, f.len));
          f.buf = nb;
        }
        f.buf.set(bytes, at);
        f.len = Math.max(f.len, at + bytes.length);
      },
      read: (at, len) => f.buf.slice(at, Math.min(f.len, at + len)),
      truncate: (n) => { f.len = Math.min(f.len, n); },
      flush: () => {},
      close: () => {},
    };
  }

  async remove(key) {
    this.parts.delete(key);
    await this.cache.delete(this.req(key, '.gguf'));
    await this.cache.delete(this.req(key, '.json'));
  }

  async list() {
    const out = [];
    for (const r of await this.cache.keys()) {
      if (r.url.endsWith('.json')) out.push({ ...(await (await this.cache.match(r)).json()), key: r.url.split('/').pop().slice(0, -5) });
    }
    return out;
  }
}

/** No storage at all: every load downloads. */
class MemoryStore extends CacheStore {
  constructor() {
    super(null);
    this.kind = 'none';
  }

  async meta() { return null; }
  async setMeta() {}
  async file(key) {
    this.parts.delete(key);
    return super.file(key);
  }
  async remove(key) { this.parts.delete(key); }
  async list() { return []; }
}

/** The best storage available, with the reasons the better ones were passed over. */
export async function openStore(preferred = 'opfs') {
  const why = [];
  if (preferred === 'opfs' || preferred === 'auto') {
    try {
      return { store: await OpfsStore.open(), why };
    } catch (e) {
      why.push(`OPFS unavailable: ${e && e.message || e}`);
    }
  }
  if (preferred !== 'none') {
    try {
      if (typeof caches !== 'object') throw new Error('no Cache API');
      return { store: await CacheStore.open(), why };
    } catch (e) {
      why.push(`Cache API unavailable: ${e && e.message || e}`);
    }
  }
  return { store: new MemoryStore(), why };
}

// ------------------------------------------------------------------ network

async function rangeFetch(url, from, to, signal) {
  const headers = {};
  if (from > 0 || to != null) headers.Range = `bytes=${from}-${to ?? ''}`;
  const r = await fetch(url, { headers, signal, cache: 'no-store' });
  if (!(r.ok || r.status === 206)) throw new Error(`GET ${url}: HTTP ${r.status} ${r.statusText}`);
  return r;
}

/** The total size from Content-Range ("bytes a-b/total") or Content-Length. */
function totalOf(r, offset) {
  const cr = r.headers.get('content-range');
  const m = cr && /\/(\d+)\s*$/.exec(cr);
  if (m) return Number(m[1]);
  const cl = r.headers.get('content-length');
  return cl != null ? offset + Number(cl) : null;
}

/** The first n bytes of url (fewer if the file is shorter), by a Range request; tolerates servers that ignore Range. */
export async function fetchHead(url, n, signal) {
  const r = await rangeFetch(url, 0, n - 1, signal);
  const total = totalOf(r, 0);
  const out = new Uint8Array(n);
  let got = 0;
  const reader = r.body.getReader();
  while (got < n) {
    const { done, value } = await reader.read();
    if (done) break;
    const k = Math.min(value.length, n - got);
    out.set(value.subarray(0, k), got);
    got += k;
  }
  reader.cancel().catch(() => {});
  return { bytes: out.subarray(0, got), total: r.status === 206 ? total : totalOf(r, 0), ranged: r.status === 206 };
}

/**
 * Brings the whole file into storage and into sink (called with (offset, bytes) in order), resuming
 * a stored prefix with a Range request.  Returns { size, sha256, source, resumedFrom, requests }.
 *   onProgress({ phase, loaded, total })
 *   retries: how many times an interrupted transfer is resumed within this call.
 *   stallMs: a body that sends nothing for this long counts as interrupted (mobile networks stall more than they fail).
 */
export async function fetchModel(url, { store, key, sha256, signal, onProgress = () => {}, chunk = 4 << 20,
  retries = 2, stallMs = 30000, reserve = () => {}, sink = () => {} }) {
  const want = sha256 ? sha256.toLowerCase() : null;
  let meta = await store.meta(key);
  if (meta && meta.url !== url) meta = null;
  const file = await store.file(key);
  const log = [];
  try {
    // A complete stored copy: no network at all (the offline path).
    if (meta && meta.complete && file.size() === meta.size && (!want || meta.sha256 === want)) {
      reserve(meta.size);
      for (let at = 0; at < meta.size; at += chunk) {
        sink(at, file.read(at, Math.min(chunk, meta.size - at)));
        onProgress({ phase: 'storage', loaded: Math.min(meta.size, at + chunk), total: meta.size });
      }
      const digest = await hashStored(file, meta.size);
      if (digest !== meta.sha256) {
        await store.remove(key);
        throw new Error(`the stored copy of ${url} is corrupt (sha256 ${digest}, expected ${meta.sha256}); it was evicted — load again to download it`);
      }
      return { size: meta.size, sha256: digest, source: store.kind, resumedFrom: null, requests: log };
    }
    // A prefix from an interrupted download is kept only if it is the same file (size and validator).
    let have = meta && !meta.complete ? Math.min(file.size(), meta.received ?? file.size()) : 0;
    if (!meta) file.truncate(0);
    let total = meta ? meta.size : null;
    let validator = meta ? meta.validator : null;
    let resumedFrom = null;
    let reserved = false;
    for (let attempt = 0; ; attempt++) {
      const r = await rangeFetch(url, have, null, signal);
      const v = r.headers.get('etag') || r.headers.get('last-modified');
      if (r.status === 206 && have > 0) {
        if (validator && v && v !== validator) {
          // The file changed on the server since the prefix was stored: start over.
          r.body.cancel().catch(() => {});
          have = 0;
          file.truncate(0);
          validator = null;
          continue;
        }
        resumedFrom = resumedFrom ?? have;
      } else if (r.status === 200) {
        have = 0; // the server ignored Range: the body is the whole file
        file.truncate(0);
      }
      log.push({ status: r.status, from: have });
      total = totalOf(r, have);
      if (total == null) throw new Error(`GET ${url}: the server sends neither Content-Length nor Content-Range, so the model size is unknown`);
      validator = v || validator;
      if (!reserved) {
        reserve(total);
        reserved = true;
        for (let at = 0; at < have; at += chunk) sink(at, file.read(at, Math.min(chunk, have - at)));
      }
      await store.setMeta(key, { url, size: total, validator, received: have, complete: false });
      onProgress({ phase: 'download', loaded: have, total });
      const reader = r.body.getReader();
      let sinceFlush = 0;
      try {
        for (;;) {
          const { done, value } = await readOrStall(reader, stallMs);
          if (done) break;
          if (have + value.length > total) throw new Error(`GET ${url}: more bytes than the announced ${total}`);
          file.write(value, have);
          sink(have, value);
          have += value.length;
          sinceFlush += value.length;
          if (sinceFlush >= chunk) {
            file.flush();
            sinceFlush = 0;
            await store.setMeta(key, { url, size: total, validator, received: have, complete: false });
          }
          onProgress({ phase: 'download', loaded: have, total });
        }
      } catch (e) {
        file.flush();
        await store.setMeta(key, { url, size: total, validator, received: have, complete: false });
        if (signal && signal.aborted) throw e;
        if (attempt >= retries) {
          throw new Error(`the download of ${url} was interrupted at byte ${have} of ${total} (${e && e.message || e}); ` +
            `${store.kind === 'opfs' ? 'the bytes so far are stored: load again to resume from there' : 'load again to retry'}`);
        }
        continue;
      }
      file.flush();
      if (have < total) {
        await store.setMeta(key, { url, size: total, validator, received: have, complete: false });
        if (attempt >= retries) {
          throw new Error(`the download of ${url} ended at byte ${have} of ${total}; ` +
            `${store.kind === 'opfs' ? 'the bytes so far are stored: load again to resume from there' : 'load again to retry'}`);
        }
        continue;
      }
      break;
    }
    onProgress({ phase: 'verify', loaded: total, total });
    const digest = await hashStored(file, total);
    if (want && digest !== want) {
      await store.remove(key);
      throw new Error(`sha256 mismatch for ${url}: got ${digest}, expected ${want}; the download was discarded`);
    }
    await store.setMeta(key, { url, size: total, validator, received: total, complete: true, sha256: digest, storedAt: new Date().toISOString() });
    return { size: total, sha256: digest, source: 'network', resumedFrom, requests: log };
  } finally {
    file.close();
  }
}

// One read, or an error when no byte came for ms milliseconds (the reader is cancelled, so the request ends).
function readOrStall(reader, ms) {
  let timer;
  const stall = new Promise((_, rej) => {
    timer = setTimeout(() => {
      reader.cancel().catch(() => {});
      rej(new Error(`no data for ${ms} ms`));
    }, ms);
  });
  return Promise.race([reader.read(), stall]).finally(() => clearTimeout(timer));
}

// crypto.subtle.digest wants one non-shared buffer, so the stored bytes are read back whole (the wasm heap may be shared memory).
async function hashStored(file, size) {
  return hex(await crypto.subtle.digest('SHA-256', file.read(0, size)));
}
