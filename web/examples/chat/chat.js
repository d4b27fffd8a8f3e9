// The example chat app: load a model with progress, then stream replies to the conversation with engine.chat().

import { load } from '../../src/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$('model').value = params.get('model') || '/models/techdocs-28M-Q4_K_M.gguf';

let engine = null;
let stopper = null;
const history = [];   // [{ role, content }] sent with every turn

function bubble(role, text = '') {
  const d = document.createElement('div');
  d.className = `msg ${role}`;
  d.textContent = text;
  $('log').append(d);
  d.scrollIntoView({ block: 'end' });
  return d;
}

function status(text) {
  $('status').textContent = text;
}

$('load').onclick = async () => {
  $('load').disabled = true;
  await engine?.unload();
  engine = null;
  // Before the first progress event: say what is happening, so that a stall shows where it is.
  status('checking this device…');
  try {
    engine = await load($('model').value, {
      onProgress: (p) => {
        if (p.phase === 'starting') return status(`starting the ${p.build} build…`);
        if (p.phase === 'restart') return status(`${p.reason}; trying again…`);
        if (p.total) $('bar').style.width = `${(100 * p.loaded / p.total).toFixed(1)}%`;
        return status(`${p.phase} ${(p.loaded / 2 ** 20).toFixed(1)} / ${(p.total / 2 ** 20).toFixed(1)} MiB`);
      },
    });
    const i = engine.info;
    status(`${i.model.name}: ${i.build}, ${i.threads} thread(s), ${i.preflight.kvK}/${i.preflight.kvV} KV, ctx ${i.preflight.nCtx}, from ${i.download.source}`);
    document.body.dataset.ready = 'true';
    $('send').disabled = false;
  } catch (e) {
    status(`could not load: ${e.message}`);
  } finally {
    $('load').disabled = false;
  }
};

$('form').onsubmit = async (ev) => {
  ev.preventDefault();
  const text = $('prompt').value.trim();
  if (!text || !engine) return;
  $('prompt').value = '';
  bubble('user', text);
  history.push({ role: 'user', content: text });
  const out = bubble('assistant');
  stopper = new AbortController();
  $('send').disabled = true;
  $('stop').disabled = false;
  document.body.dataset.streaming = 'true';
  let reply = '';
  try {
    for await (const chunk of engine.chat(history, { stream: true, maxTokens: Number(params.get('max') || 256), signal: stopper.signal })) {
      reply += chunk.choices[0].delta.content;
      out.textContent = reply;
      out.scrollIntoView({ block: 'end' });
    }
  } catch (e) {
    if (e.code !== 'ABORTED') out.textContent = reply + `\n[error: ${e.message}]`;
  }
  history.push({ role: 'assistant', content: reply });
  const s = engine.lastStats;
  if (s) status(`${s.nGenerated} tokens, ${s.decodeTokPerSec ? s.decodeTokPerSec.toFixed(1) : '-'} tok/s, first token after ${s.timeToFirstTokenMs?.toFixed(0)} ms (${s.finishReason})`);
  document.body.dataset.streaming = 'false';
  document.body.dataset.finish = s ? s.finishReason : 'error';
  $('send').disabled = false;
  $('stop').disabled = true;
};

$('stop').onclick = () => stopper?.abort();

if (params.has('autoload')) $('load').click();
