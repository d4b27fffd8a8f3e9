// The chat page's logic: conversation state, the WebSocket and SSE transports, live figures and the stop button.
// No build step and no dependencies: this file is served as-is by `lowbit serve`.

const $ = (id) => document.getElementById(id);
const ui = {
  log: $('log'), prompt: $('prompt'), send: $('send'), stop: $('stop'), form: $('composer'), error: $('error'),
  transport: $('transport'), model: $('model'), ttft: $('ttft'), tps: $('tps'), ntok: $('ntok'), finish: $('finish'),
  system: $('system'), maxTokens: $('max_tokens'), temperature: $('temperature'), pref: $('transport_pref'),
  apiKey: $('api_key'), clear: $('clear'),
};

// The conversation as the API wants it: [{role, content}], user and assistant turns alternating.
const history = [];
let current = null;   // the generation in flight: { stop(), ... } or null
let wsDown = false;   // /v1/ws refused once: use SSE for the rest of this page's life
let socket = null;    // the open WebSocket, shared by successive generations
const waiting = new Map();   // WebSocket generation id -> its handlers

// ?transport=sse|ws|auto, ?max_tokens=N, ?temperature=T and ?seed=S preset the settings (tests and bookmarks use them).
const params = new URLSearchParams(location.search);
if (['auto', 'ws', 'sse'].includes(params.get('transport'))) ui.pref.value = params.get('transport');
if (params.get('max_tokens')) ui.maxTokens.value = params.get('max_tokens');
if (params.get('temperature')) ui.temperature.value = params.get('temperature');
const seed = params.get('seed') !== null && /^\d+$/.test(params.get('seed')) ? Number(params.get('seed')) : undefined;
ui.apiKey.value = sessionStorage.getItem('lowbit-api-key') ?? '';
ui.apiKey.addEventListener('change', () => { sessionStorage.setItem('lowbit-api-key', ui.apiKey.value); loadModel(); });

function authHeaders() {
  const key = ui.apiKey.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function setTransport(name, why = '') {
  ui.transport.dataset.transport = name;
  ui.transport.textContent = `transport: ${name === 'ws' ? 'WebSocket' : name === 'sse' ? 'SSE' : name}${why ? ` (${why})` : ''}`;
}

function showError(msg) {
  ui.error.textContent = msg;
  ui.error.hidden = !msg;
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  const who = document.createElement('span');
  who.className = 'role';
  who.textContent = role;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;   // textContent, never innerHTML: model output is untrusted
  div.append(who, body);
  ui.log.append(div);
  ui.log.scrollTop = ui.log.scrollHeight;
  return body;
}

// The answer being streamed, drawn once per frame: written per token, with the scroll position read back each time,
// a server at 1,500 tokens a second forced a layout per token over an ever longer text, and the page froze.
function makeView(out) {
  let text = '', queued = false;
  const flush = () => {
    queued = false;
    out.textContent = text;
    ui.log.scrollTop = ui.log.scrollHeight;
  };
  return {
    set(t) {
      text = t;
      if (!queued) { queued = true; requestAnimationFrame(flush); }
    },
    // The last text now (a hidden tab runs no frames); the generation is over.
    end(t) { text = t; flush(); },
  };
}

async function loadModel() {
  try {
    const r = await fetch('/v1/models', { headers: authHeaders() });
    if (!r.ok) throw new Error(`${r.status}`);
    const m = (await r.json()).data[0];
    ui.model.textContent = `${m.id} · ${m.context_length ?? '?'} ctx · template ${m.chat_template ?? '?'}`;
  } catch (e) {
    ui.model.textContent = `model: unknown (${e.message === '401' ? 'API key needed' : e.message})`;
  }
}

// Live figures for one generation: time to first token, tokens and tokens per second since the first.
function makeMeter() {
  const t0 = performance.now();
  let tFirst = 0, n = 0;
  ui.ttft.textContent = '–'; ui.tps.textContent = '–'; ui.ntok.textContent = '0'; ui.finish.textContent = '…';
  return {
    token(count = 1) {
      const now = performance.now();
      if (!n) { tFirst = now; ui.ttft.textContent = (now - t0).toFixed(0); }
      n += count;
      ui.ntok.textContent = String(n);
      if (n > 1 && now > tFirst) ui.tps.textContent = ((n - 1) / ((now - tFirst) / 1000)).toFixed(1);
    },
    // The server's own figures, when it sends them, are more exact than the page's.
    final({ tokens, ttft_ms, tokens_per_second } = {}) {
      if (Number.isFinite(tokens)) ui.ntok.textContent = String(tokens);
      if (Number.isFinite(ttft_ms)) ui.ttft.textContent = ttft_ms.toFixed(0);
      if (Number.isFinite(tokens_per_second)) ui.tps.textContent = tokens_per_second.toFixed(1);
    },
  };
}

function requestBody(messages) {
  const body = { messages, max_tokens: Number(ui.maxTokens.value) || 256 };
  const t = Number(ui.temperature.value);
  if (ui.temperature.value !== '' && Number.isFinite(t)) body.temperature = t;
  if (seed !== undefined) body.seed = seed;
  return body;
}

// ---------------------------------------------------------------- WebSocket

// Resolves to an open socket, or null when /v1/ws is not there (404, refused, or no answer within 3 s).
function openSocket() {
  if (socket && socket.readyState === WebSocket.OPEN) return Promise.resolve(socket);
  return new Promise((resolve) => {
    let ws;
    try {
      // Browsers cannot set headers on a WebSocket upgrade, so the key travels as ?api_key= (see docs/protocol.md).
      const key = ui.apiKey.value.trim();
      const query = key ? `?api_key=${encodeURIComponent(key)}` : '';
      ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws${query}`);
    } catch {
      resolve(null);
      return;
    }
    const timer = setTimeout(() => { ws.close(); resolve(null); }, 3000);
    ws.onopen = () => { clearTimeout(timer); socket = ws; resolve(ws); };
    ws.onerror = () => { clearTimeout(timer); resolve(null); };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      const h = m.id !== undefined ? waiting.get(m.id) : null;
      if (h) h(m);
      else if (m.type === 'error') showError(`server: ${m.code ?? 'error'}: ${m.message ?? ''}`);
    };
    ws.onclose = () => {
      if (socket === ws) socket = null;
      // A generation cut off by a lost connection ends here with an error rather than hanging.
      for (const h of [...waiting.values()]) h({ type: 'error', code: 'connection_lost', message: 'the WebSocket connection closed' });
    };
  });
}

let nextId = 1;
function generateWS(ws, messages, view, meter) {
  const id = `chat-${Date.now().toString(36)}-${nextId++}`;
  return new Promise((resolve) => {
    let text = '';
    const end = (finish, err) => { waiting.delete(id); resolve({ text, finish, err }); };
    waiting.set(id, (m) => {
      if (m.type === 'token') {
        text += m.piece ?? '';
        view.set(text);
        meter.token();
      } else if (m.type === 'done') {
        meter.final({ tokens: m.usage?.completion_tokens, ttft_ms: m.timings?.ttft_ms, tokens_per_second: m.timings?.tokens_per_second });
        end(m.finish_reason ?? 'stop');
      } else if (m.type === 'error') {
        end('error', `${m.code ?? 'error'}: ${m.message ?? ''}`);
      }
    });
    ws.send(JSON.stringify({ type: 'generate', id, ...requestBody(messages) }));
    current.stop = () => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'cancel', id }));
      // The server answers a cancel with "done"; should that never come, the page must not stay stuck.
      setTimeout(() => { if (waiting.has(id)) end('cancelled', 'no answer to the cancel within 5 s'); }, 5000);
    };
  });
}

// ---------------------------------------------------------------- SSE

async function generateSSE(messages, view, meter) {
  const ctrl = new AbortController();
  let text = '', finish = null, stopped = false;
  current.stop = () => { stopped = true; ctrl.abort(); };
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST', signal: ctrl.signal,
      headers: { 'Content-Type': 'application/json', ...authHeaders() },
      body: JSON.stringify({ ...requestBody(messages), stream: true, stream_options: { include_usage: true } }),
    });
    if (!res.ok) {
      let msg = `HTTP ${res.status}`;
      try { const j = await res.json(); msg += `: ${j.error?.code ?? ''}: ${j.error?.message ?? ''}`; } catch { /* not JSON */ }
      return { text, finish: 'error', err: msg };
    }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split('\n')) {
          if (!line.startsWith('data: ')) continue;   // ": keep-alive" comments and the like
          const data = line.slice(6);
          if (data === '[DONE]') continue;
          const j = JSON.parse(data);
          if (j.error) return { text, finish: 'error', err: `${j.error.code ?? 'error'}: ${j.error.message}` };
          if (j.usage) meter.final({ tokens: j.usage.completion_tokens });
          const c = j.choices?.[0];
          if (c?.delta?.content) {
            text += c.delta.content;
            view.set(text);
            meter.token();
          }
          if (c?.finish_reason) finish = c.finish_reason;
        }
      }
    }
    return { text, finish: finish ?? (stopped ? 'cancelled' : 'error'), err: finish || stopped ? null : 'the stream ended early' };
  } catch (e) {
    if (stopped) return { text, finish: 'cancelled' };
    return { text, finish: 'error', err: `network: ${e.message}` };
  }
}

// ---------------------------------------------------------------- one turn

async function send(prompt) {
  if (current || !prompt.trim()) return;
  showError('');
  history.push({ role: 'user', content: prompt });
  addMessage('user', prompt);
  const out = addMessage('assistant', '');
  const view = makeView(out);
  out.parentElement.classList.add('streaming');
  const messages = ui.system.value.trim() ? [{ role: 'system', content: ui.system.value.trim() }, ...history] : [...history];
  current = { stop() {} };
  document.body.dataset.state = 'generating';
  ui.send.disabled = true;
  ui.stop.disabled = false;
  ui.finish.textContent = '…';

  let result;
  const pref = ui.pref.value;
  const ws = pref !== 'sse' && !(pref === 'auto' && wsDown) ? await openSocket() : null;
  // The clock starts once the transport is ready, so time to first token is the server's, not the handshake's.
  const meter = makeMeter();
  if (ws) {
    setTransport('ws');
    result = await generateWS(ws, messages, view, meter);
  } else if (pref === 'ws') {
    setTransport('none', 'WebSocket unavailable');
    result = { text: '', finish: 'error', err: 'WebSocket /v1/ws is not available on this server' };
  } else {
    if (pref === 'auto') wsDown = true;
    setTransport('sse', pref === 'auto' ? 'WebSocket unavailable' : '');
    result = await generateSSE(messages, view, meter);
  }
  view.end(result.text);

  out.parentElement.classList.remove('streaming');
  ui.finish.textContent = result.finish;
  if (result.err) showError(result.err);
  // A stopped or failed answer still belongs to the conversation, so the next turn sees what the user saw.
  if (result.text) history.push({ role: 'assistant', content: result.text });
  else history.pop();
  current = null;
  document.body.dataset.state = 'idle';
  ui.send.disabled = false;
  ui.stop.disabled = true;
  ui.prompt.focus();
}

ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  const p = ui.prompt.value;
  ui.prompt.value = '';
  send(p);
});
ui.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); ui.form.requestSubmit(); }
});
ui.stop.addEventListener('click', () => { if (current) { ui.stop.disabled = true; current.stop(); } });
ui.clear.addEventListener('click', () => { if (!current) { history.length = 0; ui.log.replaceChildren(); showError(''); } });

setTransport(ui.pref.value === 'sse' ? 'sse' : 'not connected');
loadModel();
