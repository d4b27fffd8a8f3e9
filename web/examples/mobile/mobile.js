// The "mobile" example: every candidate file is preflighted (header only) under the mobile profile; the best one that fits is loaded.

import { detectCapabilities, load } from '../../src/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// Best quality first; the first file whose preflight passes is the one loaded.
const candidates = (params.get('models') ||
  '/models/techdocs-28M-f16.gguf,/models/techdocs-28M-Q8_0.gguf,/models/techdocs-28M-Q4_K_M.gguf,/models/techdocs-28M-Q2_K.gguf').split(',');
const opts = { profile: 'mobile' };
if (params.has('budgetMiB')) opts.memoryBudget = Number(params.get('budgetMiB')) * 2 ** 20;
if (params.has('ctx')) opts.contextLength = Number(params.get('ctx'));

const caps = await detectCapabilities();
$('caps').textContent = `${caps.engine}${caps.mobile ? ' (mobile)' : ''}: deviceMemory ${caps.deviceMemoryGiB ?? 'unknown'} GiB, ` +
  `${caps.hardwareConcurrency} cores, SIMD ${caps.simd}, threads ${caps.threads}, WebGPU ${caps.webgpu.available}`;

let chosen = null;
for (const url of candidates) {
  const row = $('plans').insertRow();
  row.insertCell().textContent = url.split('/').pop();
  const cell = row.insertCell();
  try {
    const r = await load(url, { ...opts, capabilities: caps, preflightOnly: true });
    cell.className = 'fit';
    cell.textContent = `fits: ${r.preflight.reason}`;
    if (!chosen) chosen = { url, preflight: r.preflight, budget: r.budget };
  } catch (e) {
    cell.className = 'nofit';
    cell.textContent = e.message;
  }
}
window.mobileResult = { chosen };
if (!chosen) {
  $('choice').textContent = 'Nothing fits this device.';
} else {
  $('choice').textContent = `Loading ${chosen.url.split('/').pop()} (budget: ${chosen.budget.why})…`;
  const engine = await load(chosen.url, { ...opts, capabilities: caps,
    onProgress: (p) => { $('choice').textContent = `${p.phase} ${(100 * p.loaded / (p.total || 1)).toFixed(0)}%`; } });
  $('choice').textContent = `Loaded ${engine.info.model.name} (${chosen.url.split('/').pop()}): ${engine.info.build}, ` +
    `${engine.info.preflight.kvK}/${engine.info.preflight.kvV} KV, context ${engine.info.preflight.nCtx}`;
  window.mobileResult.loaded = JSON.parse(JSON.stringify(engine.info));
  $('go').disabled = false;
  $('go').onclick = async () => {
    $('go').disabled = true;
    $('out').textContent = '';
    for await (const piece of engine.generate($('prompt').value, { maxTokens: Number(params.get('max') || 64) })) $('out').textContent += piece;
    window.mobileResult.stats = engine.lastStats;
    $('go').disabled = false;
    document.body.dataset.done = 'true';
  };
}
document.body.dataset.ready = 'true';
