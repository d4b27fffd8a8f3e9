// TypeScript declarations of the lowbit web SDK (web/src/index.js).

export type Build = 'simd-mt-relaxed' | 'simd-mt' | 'simd-relaxed' | 'simd' | 'nosimd';
/** A build name starts with exactly that build (then its fallbacks without relaxed SIMD). */
export type Backend = 'auto' | 'wasm-mt' | 'wasm-simd' | 'wasm' | Build;
export type KvType = 'f16' | 'q8' | 'q4' | 'q3' | 'q2';
export type StorageKind = 'opfs' | 'cache' | 'none';

export interface Capabilities {
  engine: 'chromium' | 'firefox' | 'webkit' | 'unknown';
  mobile: boolean;
  userAgent: string;
  wasm: boolean;
  /** WebAssembly SIMD128 (WebAssembly.validate of a one-instruction module). */
  simd: boolean;
  /** i16x8.relaxed_dot_i8x16_i7x16_s and f32x4.relaxed_madd validate: the "-relaxed" builds can run. */
  relaxedSimd: boolean;
  /** Shared memory + cross-origin isolation: the threaded build can run. */
  threads: boolean;
  threadsReason: string;
  crossOriginIsolated: boolean;
  sharedArrayBuffer: boolean;
  hardwareConcurrency: number;
  /** navigator.deviceMemory (Chromium only), else null. */
  deviceMemoryGiB: number | null;
  storage: { estimate: { usage: number | null; quota: number | null } | null; persisted: boolean | null; opfs: boolean; cacheApi: boolean; error?: string };
  webgpu: {
    available: boolean;
    reason: string;
    adapter: null | { vendor: string; architecture: string; description: string; features: string[]; limits: Record<string, number> };
  };
}

export interface FallbackStep {
  build: Build | 'webgpu';
  taken: boolean;
  candidate?: boolean;
  reason: string;
}

export interface Profile {
  values: {
    memoryFraction: number; assumedDeviceMemoryGiB: number; maxWasmHeapMiB: number; contextLength: number;
    minContext: number; maxThreads: number; threadsFromCores: number; storage: StorageKind; chunkMiB: number;
    [k: string]: unknown;
  };
  /** For each value, the profile layer that set it and why. */
  reasons: Record<string, string>;
  layers: string[];
}

export interface Preflight {
  budget: number;
  budgetWhy: string;
  fileBytes: number;
  fixedBytes: number;
  nCtxTrain: number;
  wantedContext: number;
  minContext: number;
  kvK: KvType;
  kvV: KvType;
  nCtx: number;
  totalBytes: number;
  /** A sentence saying why this configuration was chosen. */
  reason: string;
  alternatives: { kv: string; nCtx: number; totalBytes: number }[];
}

export interface Progress {
  /** starting: a build begins to start (build says which); restart: the worker froze while starting and a fresh one
   * is tried (reason says why); wasm: a build runs; then preflight, download or storage, verify. */
  phase: 'starting' | 'restart' | 'wasm' | 'preflight' | 'download' | 'storage' | 'verify';
  loaded: number;
  total: number;
  plan?: Preflight;
  build?: Build;
  reason?: string;
}

export interface LoadOptions {
  backend?: Backend;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  /** Bytes the engine may use; default: deviceMemory (or the profile's guess) x the profile's memoryFraction. */
  memoryBudget?: number;
  /** A profile name from web/profiles.json, or values overriding the detected one. */
  profile?: 'chromium' | 'firefox' | 'webkit' | 'mobile' | Partial<Profile['values']>;
  /** The context wanted (default: the profile's, at most the trained one). */
  contextLength?: number;
  /** The least context acceptable; below it load() rejects (default: the profile's minContext). */
  minContext?: number;
  /** KV cache type for keys and values; 'auto' lets the planner choose. */
  kvType?: 'auto' | KvType;
  threads?: number;
  batch?: number;
  /** Expected sha256 (hex) of the file; a mismatch rejects and discards the download. */
  sha256?: string;
  storage?: StorageKind;
  cacheKey?: string;
  /** How often an interrupted download is resumed within this call (default 2). */
  retries?: number;
  /** A download that receives nothing for this long counts as interrupted and is resumed (default 30000). */
  stallMs?: number;
  /** URL of the directory holding lowbit-*.mjs/.wasm (default: build/web/ of this repository). */
  wasmBase?: string | URL;
  profilesUrl?: string | URL;
  /** Capabilities to use instead of detecting them (tests, simulations). */
  capabilities?: Capabilities;
  /** Stop after the preflight: resolves to a PreflightReport instead of an Engine. */
  preflightOnly?: boolean;
  /** Ask for persistent storage (navigator.storage.persist); default true. */
  persist?: boolean;
  /** A worker that sends nothing for this long while a build starts is terminated and the load retried in a fresh
   * one (default 5000). */
  startupStallMs?: number;
}

export interface GenerateOptions {
  maxTokens?: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  seed?: number;
  stop?: string | string[];
  signal?: AbortSignal;
  addSpecial?: boolean;
}

export interface GenerationStats {
  build: Build;
  threads: number;
  nPrompt: number;
  nGenerated: number;
  finishReason: 'stop' | 'length' | 'cancelled' | 'context' | 'error';
  promptMs: number;
  timeToFirstTokenMs: number | null;
  decodeTokPerSec: number | null;
  promptTokPerSec: number | null;
  heapBytes: number;
}

export interface ModelInfo {
  arch: string; name: string; n_vocab: number; n_ctx_train: number; n_embd: number; n_layer: number; n_head: number;
  n_head_kv: number; n_ff: number; n_params: number; weight_bytes: number; bits_per_weight: number; bos: number; eos: number;
  chat_format: string;
}

export interface LoadInfo {
  build: Build;
  buildsTried: { build: Build; error: string }[];
  threads: number;
  model: ModelInfo;
  preflight: Preflight;
  headerRequests: { range: string; ranged: boolean; got: number }[];
  headerFromStorage: boolean;
  storage: StorageKind;
  storageWhy: string[];
  download: { size: number; sha256: string; source: 'network' | StorageKind; resumedFrom: number | null; requests: { status: number; from: number }[] };
  loadMs: number;
  fetchMs: number;
  heapBytes: number;
  capabilities: Capabilities;
  fallback: FallbackStep[];
  profile: Profile;
  budget: { bytes: number; why: string };
  /** navigator.storage.persist()'s answer, 'pending' until the browser gives one. */
  persisted: boolean | 'pending' | null;
}

export interface PreflightReport {
  build: Build;
  buildsTried: { build: Build; error: string }[];
  preflight: Preflight;
  headerRequests: { range: string; ranged: boolean; got: number }[];
  capabilities: Capabilities;
  fallback: FallbackStep[];
  profile: Profile;
  budget: { bytes: number; why: string };
}

export interface ChatMessage { role: 'system' | 'user' | 'assistant'; content: string }
export interface ChatCompletion {
  object: 'chat.completion';
  choices: { index: number; message: { role: 'assistant'; content: string }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}
export interface ChatCompletionChunk { object: 'chat.completion.chunk'; choices: { index: number; delta: { content: string } }[] }

export declare class LowbitError extends Error {
  /** 'PREFLIGHT' (the model does not fit), 'ABORTED', 'NO_BUILD', 'PREFLIGHT_FORMAT', 'ERROR'. */
  code: string;
  details?: unknown;
}

export declare class Engine {
  readonly info: LoadInfo;
  lastStats?: GenerationStats;
  generate(prompt: string, options?: GenerateOptions): AsyncGenerator<string, void, void>;
  chat(messages: ChatMessage[], options: GenerateOptions & { stream: true }): AsyncGenerator<ChatCompletionChunk, void, void>;
  chat(messages: ChatMessage[], options?: GenerateOptions & { stream?: false }): Promise<ChatCompletion>;
  stats(): Promise<{ load: LoadInfo | null; last: GenerationStats | null; heapBytes: number }>;
  unload(): Promise<void>;
}

export declare function load(modelUrl: string | URL, options: LoadOptions & { preflightOnly: true }): Promise<PreflightReport>;
export declare function load(modelUrl: string | URL, options?: LoadOptions): Promise<Engine>;
export declare function evict(modelUrl?: string | URL | null, options?: { all?: boolean; cacheKey?: string; storage?: StorageKind }): Promise<number>;
export declare function listStored(options?: { storage?: StorageKind }): Promise<{ storage: StorageKind; models: { url: string; size: number; sha256?: string; complete: boolean; received: number; storedAt?: string; key: string }[] }>;
/** probeMs: how long a storage or WebGPU probe may take before it counts as failed (default 3000 / 8000 ms). */
export declare function detectCapabilities(options?: { navigator?: object; probeMs?: { storage?: number; gpu?: number } }): Promise<Capabilities>;
export declare function buildChain(caps: Capabilities, backend?: Backend | 'webgpu'): { chain: Build[]; steps: FallbackStep[] };
export declare function loadProfiles(url?: string | URL): Promise<Record<string, Record<string, unknown>>>;
export declare function resolveProfile(data: Record<string, Record<string, unknown>>, caps: Capabilities, override?: LoadOptions['profile']): Profile;
export declare function memoryBudget(caps: Capabilities, profile: Profile, explicit?: number): { bytes: number; why: string };
