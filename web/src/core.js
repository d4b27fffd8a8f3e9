// The wasm side of one engine: wraps the lbw_* exports of web/c/lowbit_web.c for the worker (and for node tests).
//
// Pointers cross as wasm32 numbers; those above 2^31 arrive negative, hence `>>> 0` everywhere.
// Memory views are re-read after every call that may allocate, because growth replaces the buffer.

const KV_TYPES = ['f16', 'q8', 'q4', 'q3', 'q2'];
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8');

export class Core {
  /** @param {object} M an instantiated emscripten module of build/web/lowbit-*.mjs */
  constructor(M) {
    this.M = M;
    this.model = 0;
    this.session = 0;
    this.data = 0; // [dataSize] the GGUF image in the wasm heap; owned until unload
    this.dataSize = 0;
  }

  static async create(factory, opts = {}) {
    const M = await factory(opts);
    return new Core(M);
  }

  heap() {
    const M = this.M;
    this.mem ??= M.wasmMemory || (M.asm && Object.values(M.asm).find((x) => x instanceof WebAssembly.Memory)) || null;
    // With shared memory, growth on another thread leaves M.HEAPU8 on the old, shorter buffer.
    if (this.mem && M.HEAPU8.byteLength !== this.mem.buffer.byteLength) return new Uint8Array(this.mem.buffer);
    return M.HEAPU8;
  }

  str(ptr) {
    ptr >>>= 0;
    if (!ptr) return '';
    const h = this.heap();
    let end = ptr;
    while (h[end]) end++;
    return dec.decode(h.slice(ptr, end));
  }

  json(ptr) {
    return JSON.parse(this.str(ptr));
  }

  // Copies bytes into a fresh malloc'd, NUL-terminated block; the caller frees it.
  alloc(bytes) {
    const p = this.M._malloc(bytes.length + 1) >>> 0;
    if (!p) throw new Error(`out of wasm memory allocating ${bytes.length} bytes`);
    const h = this.heap();
    h.set(bytes, p);
    h[p + bytes.length] = 0;
    return p;
  }

  lastError() {
    return this.str(this.M._lbw_last_error());
  }

  /** Plans from the first bytes of a GGUF file (lb_plan_from_gguf). */
  plan(header, { budget, threads = 1, batch = 0, minCtx = 0, maxCtx = 0 }) {
    const p = this.alloc(header);
    try {
      return this.json(this.M._lbw_plan(p, header.length, budget, threads, batch, minCtx, maxCtx));
    } finally {
      this.M._free(p);
    }
  }

  /** Reserves the heap block the model's bytes are copied into as they arrive. */
  reserve(size) {
    this.releaseData();
    const p = this.M._malloc(size) >>> 0;
    if (!p) throw new Error(`out of wasm memory: cannot reserve ${size} bytes for the model (wasm32 allows one block of at most 2 GiB)`);
    this.data = p;
    this.dataSize = size;
  }

  // Copies one piece of the file at byte offset off into the reserved block.
  write(off, bytes) {
    if (off + bytes.length > this.dataSize) throw new Error(`model bytes past the reserved ${this.dataSize} (offset ${off})`);
    this.heap().set(bytes, this.data + off);
  }

  loadModel() {
    const m = this.M._lbw_model_load(this.data, this.dataSize) >>> 0;
    if (!m) throw new Error(`loading the model: ${this.lastError()}`);
    this.model = m;
    return this.json(this.M._lbw_model_info(m));
  }

  newSession({ nCtx, threads = 1, batch = 0, kvK = 'f16', kvV = 'f16' }) {
    if (this.session) this.M._lbw_session_free(this.session);
    this.session = 0;
    const s = this.M._lbw_session_new(this.model, nCtx, threads, batch, KV_TYPES.indexOf(kvK), KV_TYPES.indexOf(kvV)) >>> 0;
    if (!s) throw new Error(`creating the session: ${this.lastError()}`);
    this.session = s;
  }

  /** The prompt for OpenAI-style messages in the model's chat format, and the stop string it needs. */
  chatPrompt(messages) {
    const parts = [];
    for (const m of messages) parts.push(String(m.role), String(m.content ?? ''));
    const bytes = enc.encode(parts.join('\0') + '\0');
    const p = this.alloc(bytes);
    try {
      const out = this.M._lbw_chat_prompt(this.model, p, messages.length) >>> 0;
      if (!out) throw new Error(this.lastError());
      const text = this.str(out);
      this.M._free(out);
      const stop = this.str(this.M._lbw_chat_stop(this.model));
      return { prompt: text, stop: stop ? [stop] : [] };
    } finally {
      this.M._free(p);
    }
  }

  /** Tokenizes and evaluates the prompt; then call step() until it returns null. */
  begin(prompt, o = {}) {
    const stops = (o.stop || []).filter((s) => s.length > 0);
    const ps = this.alloc(enc.encode(prompt));
    const pst = this.alloc(enc.encode(stops.map((s) => s + '\0').join('')));
    try {
      const rc = this.M._lbw_gen_begin(this.session, this.model, ps, o.maxTokens ?? 128, o.temperature ?? 0,
        o.topK ?? 0, o.topP ?? 1, o.minP ?? 0, o.repeatPenalty ?? 1, o.seed ?? 42, pst, stops.length,
        o.addSpecial === false ? 0 : 1);
      if (rc) throw new Error(this.lastError());
    } finally {
      this.M._free(ps);
      this.M._free(pst);
    }
  }

  /** One event: { token, bytes } (bytes are whole UTF-8 characters), or null at the end. */
  step() {
    const r = this.M._lbw_gen_step();
    if (r < 0) throw new Error(this.lastError());
    if (r === 0) return null;
    const p = this.M._lbw_gen_piece() >>> 0;
    const n = this.M._lbw_gen_piece_len();
    return { token: this.M._lbw_gen_token(), bytes: this.heap().slice(p, p + n) };
  }

  genStats() {
    return this.json(this.M._lbw_gen_stats());
  }

  endGen() {
    this.M._lbw_gen_end();
  }

  releaseData() {
    if (this.data) this.M._free(this.data);
    this.data = 0;
    this.dataSize = 0;
  }

  unload() {
    this.M._lbw_gen_end();
    if (this.session) this.M._lbw_session_free(this.session);
    if (this.model) this.M._lbw_model_free(this.model);
    this.session = this.model = 0;
    this.releaseData();
  }

  heapBytes() {
    return this.heap().byteLength;
  }
}

export { KV_TYPES };
