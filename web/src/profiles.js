// Browser profiles (web/profiles.json): the defaults for this engine, merged with the caller's overrides, and the memory budget they imply.

let cached = null;

/** Reads web/profiles.json next to this SDK (once). */
export async function loadProfiles(url = new URL('../profiles.json', import.meta.url)) {
  if (!cached) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`cannot read the browser profiles at ${url}: HTTP ${r.status}`);
    cached = await r.json();
  }
  return cached;
}

/**
 * Merges default <- engine <- mobile (on mobile devices) <- override.  override is a profile name
 * ('chromium', 'firefox', 'webkit', 'mobile'), an object of values, or undefined.
 * Returns { values, reasons, layers }: reasons[key] is the *_why text of the layer that set the value.
 */
export function resolveProfile(data, caps, override) {
  const layers = ['default'];
  if (data[caps.engine]) layers.push(caps.engine);
  if (caps.mobile) layers.push('mobile');
  let extra = null;
  if (typeof override === 'string') {
    if (!data[override]) throw new Error(`unknown profile '${override}' (have: ${Object.keys(data).filter((k) => k !== 'about').join(', ')})`);
    if (!layers.includes(override)) layers.push(override);
  } else if (override && typeof override === 'object') extra = override;
  const values = {};
  const reasons = {};
  for (const name of layers) {
    for (const [k, v] of Object.entries(data[name])) {
      if (k.endsWith('_why')) continue;
      values[k] = v;
      reasons[k] = `${name}: ${data[name][k + '_why'] || ''}`;
    }
  }
  if (extra) {
    for (const [k, v] of Object.entries(extra)) {
      values[k] = v;
      reasons[k] = 'set by the caller';
    }
    layers.push('caller');
  }
  return { values, reasons, layers };
}

/** The bytes the engine may use, and how that figure was reached. */
export function memoryBudget(caps, profile, explicit) {
  const maxHeap = profile.values.maxWasmHeapMiB * 2 ** 20;
  if (explicit != null) {
    const b = Math.min(explicit, maxHeap);
    return { bytes: b, why: `memoryBudget ${mib(explicit)} given by the caller${b < explicit ? `, capped at the wasm heap limit ${mib(maxHeap)}` : ''}` };
  }
  const dm = caps.deviceMemoryGiB ?? profile.values.assumedDeviceMemoryGiB;
  const from = caps.deviceMemoryGiB != null ? `navigator.deviceMemory ${dm} GiB` : `assumed ${dm} GiB (the browser does not report deviceMemory)`;
  const raw = dm * 2 ** 30 * profile.values.memoryFraction;
  const b = Math.min(raw, maxHeap);
  return { bytes: b, why: `${from} x memoryFraction ${profile.values.memoryFraction} = ${mib(raw)}${b < raw ? `, capped at the wasm heap limit ${mib(maxHeap)}` : ''}` };
}

export function mib(bytes) {
  return `${(bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0)} MiB`;
}
