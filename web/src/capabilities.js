// Capability detection and the build fallback chain: what this browser can run, and which wasm build to try first.

// The smallest module that uses a SIMD128 instruction: (func (result v128) i32.const 0 i8x16.splat).
// WebAssembly.validate() on it answers "is SIMD128 supported" without compiling anything big.
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
  0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
  0x0a, 0x08, 0x01, 0x06, 0x00, 0x41, 0x00, 0xfd, 0x0f, 0x0b, // code: no locals; i32.const 0; i8x16.splat; end
]);

// Relaxed SIMD, the two instructions the "-relaxed" builds use: (func (param v128 v128) (result v128)
// local.get 0 local.get 1 i16x8.relaxed_dot_i8x16_i7x16_s local.get 0 local.get 1 f32x4.relaxed_madd).
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x07, 0x01, 0x60, 0x02, 0x7b, 0x7b, 0x01, 0x7b, // type section: (v128, v128) -> v128
  0x03, 0x02, 0x01, 0x00,
  0x0a, 0x12, 0x01, 0x10, 0x00, 0x20, 0x00, 0x20, 0x01, 0xfd, 0x92, 0x02, // code: opcode 0xfd 0x112 (the dot),
  0x20, 0x00, 0x20, 0x01, 0xfd, 0x85, 0x02, 0x0b, //                        then 0xfd 0x105 (the multiply-add)
]);

// A shared memory needs the threads proposal; validate a module that declares one.
const THREADS_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x05, 0x04, 0x01, 0x03, 0x01, 0x01, // memory section: shared, min 1, max 1
]);

function validate(bytes) {
  try {
    return typeof WebAssembly === 'object' && WebAssembly.validate(bytes);
  } catch {
    return false;
  }
}

// A probe that never answers (a GPU driver that hangs in adapter creation, a storage backend that waits on
// something) must not stall loading for ever: after ms it counts as failed, with the reason.
const PROBE_MS = { storage: 3000, gpu: 8000 };
function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Which engine family runs this page; 'mobile' wins over the engine when the UA or touch/size says so. */
export function browserFamily(nav = globalThis.navigator) {
  const ua = (nav && nav.userAgent) || '';
  const mobile = /Android|iPhone|iPad|Mobile/i.test(ua) || (nav && nav.userAgentData && nav.userAgentData.mobile === true);
  let engine = 'unknown';
  if (/Firefox\//.test(ua)) engine = 'firefox';
  else if (/Chrom(e|ium)\//.test(ua) || /Edg\//.test(ua)) engine = 'chromium';
  else if (/AppleWebKit\//.test(ua)) engine = 'webkit';
  return { engine, mobile: !!mobile, userAgent: ua };
}

/**
 * Everything lowbit adapts to.  Never throws: a probe that fails reports false/null with the reason, and a probe
 * that does not answer in time (storage 3 s, WebGPU adapter 8 s; options.probeMs overrides) counts as failed.
 * options.navigator replaces globalThis.navigator (tests).
 * @returns {Promise<import('./index').Capabilities>}
 */
export async function detectCapabilities(options = {}) {
  const nav = options.navigator || globalThis.navigator || {};
  const probeMs = { ...PROBE_MS, ...options.probeMs };
  const caps = {
    ...browserFamily(nav),
    wasm: typeof WebAssembly === 'object',
    simd: validate(SIMD_PROBE),
    relaxedSimd: validate(RELAXED_SIMD_PROBE),
    threads: false,
    threadsReason: '',
    crossOriginIsolated: !!globalThis.crossOriginIsolated,
    sharedArrayBuffer: typeof SharedArrayBuffer === 'function',
    hardwareConcurrency: nav.hardwareConcurrency || 1,
    deviceMemoryGiB: typeof nav.deviceMemory === 'number' ? nav.deviceMemory : null,
    storage: { estimate: null, persisted: null, opfs: false, cacheApi: typeof caches === 'object' },
    webgpu: { available: false, reason: '', adapter: null },
  };
  if (!caps.sharedArrayBuffer) caps.threadsReason = 'SharedArrayBuffer is missing (the page is not cross-origin isolated, or the browser disables it)';
  else if (!caps.crossOriginIsolated) caps.threadsReason = 'the page is not cross-origin isolated (serve it with COOP: same-origin and COEP: require-corp)';
  else if (!validate(THREADS_PROBE)) caps.threadsReason = 'this WebAssembly engine rejects shared memory';
  else caps.threads = true;

  try {
    if (nav.storage && nav.storage.estimate) {
      const e = await within(nav.storage.estimate(), probeMs.storage, 'navigator.storage.estimate()');
      caps.storage.estimate = { usage: e.usage ?? null, quota: e.quota ?? null };
    }
    if (nav.storage && nav.storage.persisted) caps.storage.persisted = await within(nav.storage.persisted(), probeMs.storage, 'navigator.storage.persisted()');
    caps.storage.opfs = !!(nav.storage && nav.storage.getDirectory);
  } catch (err) {
    caps.storage.error = String(err && err.message || err);
  }

  if (nav.gpu && nav.gpu.requestAdapter) {
    try {
      const adapter = await within(nav.gpu.requestAdapter(), probeMs.gpu, 'navigator.gpu.requestAdapter()');
      if (adapter) {
        const info = adapter.info || (adapter.requestAdapterInfo ? await within(adapter.requestAdapterInfo(), probeMs.gpu, 'requestAdapterInfo()') : {});
        const limits = {};
        for (const k of ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize',
          'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX']) limits[k] = adapter.limits[k];
        caps.webgpu = {
          available: true, reason: '',
          adapter: { vendor: info.vendor || '', architecture: info.architecture || '', description: info.description || '',
            features: [...adapter.features].sort(), limits },
        };
      } else caps.webgpu.reason = 'navigator.gpu.requestAdapter() returned null';
    } catch (err) {
      caps.webgpu.reason = `requestAdapter failed: ${err && err.message || err}`;
    }
  } else caps.webgpu.reason = 'navigator.gpu is missing';
  return caps;
}

/**
 * The builds to try, best first, each with the reason it is (or is not) in the list.
 * backend: 'auto' | 'wasm-mt' | 'wasm-simd' | 'wasm' (forcing a build skips the ones above it), or a build's own
 * name ('simd-mt-relaxed', 'simd-mt', 'simd-relaxed', 'simd', 'nosimd') to start with exactly that build (the
 * fallbacks after it are then the builds without relaxed SIMD).  Each "-relaxed" build is its base build with the
 * quantized dot products on relaxed SIMD's 8-bit dot and multiply-add (the multiply-add fuses on x86 with FMA3 and
 * on Arm, which gives native lowbit's float results bit for bit; docs/web.md); it comes first where the engine
 * validates those instructions (Chromium does; Firefox ESR and WebKit may not, so it is detected, never assumed).  WebGPU is not a build yet (the next issue); 'auto' notes why it was passed over.
 */
export function buildChain(caps, backend = 'auto') {
  const steps = [];
  const chain = [];
  const order = { auto: 0, webgpu: 0, 'wasm-mt': 0, 'wasm-simd': 2, wasm: 4 };
  const builds = ['simd-mt-relaxed', 'simd-mt', 'simd-relaxed', 'simd', 'nosimd'];
  const exact = builds.indexOf(backend);
  if (!(backend in order) && exact < 0) {
    throw new Error(`unknown backend '${backend}' (use auto, wasm-mt, wasm-simd, wasm or a build name: ${builds.join(', ')})`);
  }
  const start = exact >= 0 ? exact : order[backend];
  if (backend === 'auto' || backend === 'webgpu') {
    steps.push({ build: 'webgpu', taken: false, reason: caps.webgpu.available
      ? 'a WebGPU adapter is present, but the WebGPU backend is not part of this release'
      : `no WebGPU: ${caps.webgpu.reason}` });
  }
  const want = (i, build, ok, why) => {
    if (i < start || (exact >= 0 && i > exact && build.endsWith('-relaxed'))) return;
    steps.push({ build, taken: ok && chain.length === 0, candidate: ok, reason: why });
    if (ok) chain.push(build);
  };
  const relaxed = caps.relaxedSimd === true;
  const noRelaxed = 'no relaxed SIMD (i16x8.relaxed_dot_i8x16_i7x16_s or f32x4.relaxed_madd does not validate)';
  want(0, 'simd-mt-relaxed', caps.simd && caps.threads && relaxed,
    !caps.simd ? 'no WebAssembly SIMD128' : !caps.threads ? `no threads: ${caps.threadsReason}` : !relaxed ? noRelaxed
      : 'SIMD128, relaxed SIMD and threads available');
  want(1, 'simd-mt', caps.simd && caps.threads,
    !caps.simd ? 'no WebAssembly SIMD128' : !caps.threads ? `no threads: ${caps.threadsReason}` : 'SIMD128 and threads available');
  want(2, 'simd-relaxed', caps.simd && relaxed,
    !caps.simd ? 'no WebAssembly SIMD128' : !relaxed ? noRelaxed : 'SIMD128 and relaxed SIMD available, single thread');
  want(3, 'simd', caps.simd, caps.simd ? 'SIMD128 available, single thread' : 'no WebAssembly SIMD128');
  want(4, 'nosimd', caps.wasm, caps.wasm ? 'plain WebAssembly, the last resort' : 'no WebAssembly at all');
  if (chain.length === 0) throw new Error('this browser cannot run lowbit: ' + steps.map((s) => `${s.build}: ${s.reason}`).join('; '));
  return { chain, steps };
}
