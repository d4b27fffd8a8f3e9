// Writes the header of a GGUF file (no tensor data) for preflight tests: a model whose header promises gigabytes.

const enc = new TextEncoder();

class W {
  constructor() { this.parts = []; this.n = 0; }
  bytes(b) { this.parts.push(b); this.n += b.length; }
  u32(v) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); this.bytes(b); }
  u64(v) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v), true); this.bytes(b); }
  str(s) { const b = enc.encode(s); this.u64(b.length); this.bytes(b); }
  out() { const r = new Uint8Array(this.n); let o = 0; for (const p of this.parts) { r.set(p, o); o += p.length; } return r; }
}

const GGUF_TYPE_UINT32 = 4, GGUF_TYPE_STRING = 8, GGML_TYPE_F16 = 1;

/**
 * A llama-shaped header: n_layer blocks of one n_embd x n_ff F16 tensor each, plus token_embd.weight.
 * Returns { bytes, fileBytes } where fileBytes is the size the header implies.
 */
export function llamaHeader({ nEmbd = 4096, nLayer = 32, nFf = 11008, nHead = 32, nVocab = 32000, nCtx = 4096 } = {}) {
  const kv = [
    ['general.architecture', GGUF_TYPE_STRING, 'llama'],
    ['general.name', GGUF_TYPE_STRING, 'synthetic-big'],
    ['llama.context_length', GGUF_TYPE_UINT32, nCtx],
    ['llama.embedding_length', GGUF_TYPE_UINT32, nEmbd],
    ['llama.block_count', GGUF_TYPE_UINT32, nLayer],
    ['llama.feed_forward_length', GGUF_TYPE_UINT32, nFf],
    ['llama.attention.head_count', GGUF_TYPE_UINT32, nHead],
  ];
  const tensors = [['token_embd.weight', [nEmbd, nVocab]]];
  for (let i = 0; i < nLayer; i++) tensors.push([`blk.${i}.ffn_up.weight`, [nEmbd, nFf]]);
  const w = new W();
  w.bytes(enc.encode('GGUF'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kv.length);
  for (const [k, t, v] of kv) {
    w.str(k);
    w.u32(t);
    if (t === GGUF_TYPE_STRING) w.str(v); else w.u32(v);
  }
  let off = 0;
  for (const [name, dims] of tensors) {
    w.str(name);
    w.u32(dims.length);
    for (const d of dims) w.u64(d);
    w.u32(GGML_TYPE_F16);
    w.u64(off);
    off += dims.reduce((a, b) => a * b, 1) * 2;
    off = Math.ceil(off / 32) * 32;
  }
  const head = w.out();
  const start = Math.ceil(head.length / 32) * 32;
  const bytes = new Uint8Array(start);
  bytes.set(head);
  return { bytes, fileBytes: start + off };
}
