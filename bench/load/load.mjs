// Load test for `lowbit serve` on loopback: N concurrent streaming clients for a fixed time, then latency and throughput figures.
//
//   node bench/load/load.mjs                       32 clients for 60 s (acceptance 3 and 5 of issue 5)
//   node bench/load/load.mjs --scaling             aggregate tok/s of 8 streams vs 1 stream (batched decoding)
//   node bench/load/load.mjs --scaling --rounds 4  the same, 1 and 8 streams alternated 4 times: median of the ratios
//   options: --clients N --duration S --max-tokens N --parallel N --threads N --url URL (use a running server)
//            --bin PATH --model PATH --json --rounds N
//
// A shared machine's speed drifts by tens of percent from minute to minute, and one --scaling round measures its
// two halves 15-20 s apart; alternating rounds pair each 8-stream run with the 1-stream run just before it.
//
// Each client sends POST /v1/completions with "stream": true in a loop until the time is up (requests in flight then
// finish).  The X-Lowbit-Timing header makes the server stamp every SSE event with the engine's release time on the
// monotonic clock node's process.hrtime also reads, so the delivery overhead is measured per token, not guessed.
// The server's batched-step counters, read before and after each run, say where its decode loop spent the time.
import http from 'node:http';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const PROMPTS = [
  'The build system compiles every source file',
  'To configure the server, edit the file',
  'A cache stores recently used data so that',
  'The function returns an error code when',
  'Install the package with the command',
  'Memory is allocated once at start-up because',
  'The test suite runs every unit test and',
  'When the queue is full, the server answers',
];

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;   // CLOCK_MONOTONIC, as the server's lb_time_ms

function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

// One streaming request; resolves to its record (never rejects: failures are recorded as errors).
function streamOnce(url, agent, prompt, maxTokens) {
  return new Promise((resolve) => {
    const rec = { ok: false, error: null, tSend: nowMs(), ttft: NaN, tokens: 0, prompt: 0, cached: 0, gaps: [], engineGaps: [],
                  delays: [] };
    const body = JSON.stringify({ model: 'lowbit', prompt, max_tokens: maxTokens, stream: true,
                                  stream_options: { include_usage: true }, temperature: 0.8, seed: Math.floor(Math.random() * 1e9) });
    const req = http.request(url + '/v1/completions', {
      method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'X-Lowbit-Timing': '1' },
    }, (res) => {
      if (res.statusCode !== 200) {
        rec.error = `HTTP ${res.statusCode}`;
        res.resume();
        res.on('end', () => resolve(rec));
        return;
      }
      res.setEncoding('utf8');
      let buf = '', stamp = null, prevArrive = NaN, prevStamp = null, done = false;
      res.on('data', (d) => {
        const arrive = nowMs();
        buf += d;
        let k;
        while ((k = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, k);
          buf = buf.slice(k + 2);
          if (ev.startsWith(': lb-t ')) {
            const [t, n] = ev.slice(7).split(' ').map(Number);
            stamp = { t, n };
            continue;
          }
          if (ev.startsWith(':')) continue;   // keep-alive
          if (!ev.startsWith('data: ')) continue;
          const data = ev.slice(6);
          if (data === '[DONE]') { done = true; continue; }
          let j;
          try { j = JSON.parse(data); } catch { rec.error = 'bad JSON in the stream'; continue; }
          if (j.error) { rec.error = `stream error: ${j.error.message}`; continue; }
          if (j.usage) {
            rec.tokens = j.usage.completion_tokens;
            rec.prompt = j.usage.prompt_tokens;
            rec.cached = j.usage.prompt_tokens_details?.cached_tokens ?? 0;
            continue;
          }
          const text = j.choices?.[0]?.text ?? '';
          if (!text || !stamp) continue;
          // This event carries the text of tokens prevStamp.n+1 .. stamp.n.
          const nTok = Math.max(1, stamp.n - (prevStamp ? prevStamp.n : 0));
          if (Number.isNaN(rec.ttft)) rec.ttft = arrive - rec.tSend;
          else {
            for (let i = 0; i < nTok; i++) rec.gaps.push((arrive - prevArrive) / nTok);
            for (let i = 0; i < nTok; i++) rec.engineGaps.push((stamp.t - prevStamp.t) / nTok);
          }
          rec.delays.push(arrive - stamp.t);
          prevArrive = arrive;
          prevStamp = stamp;
          stamp = null;
        }
      });
      res.on('end', () => {
        if (!done && !rec.error) rec.error = 'stream ended without [DONE]';
        rec.ok = !rec.error;
        resolve(rec);
      });
      res.on('error', (e) => { rec.error = `response: ${e.message}`; resolve(rec); });
    });
    req.on('error', (e) => { rec.error = `request: ${e.message}`; resolve(rec); });
    req.end(body);
  });
}

// The server's batched-step counters (GET /metrics; docs/server.md): null when they cannot be read.
async function stepCounters(url) {
  try {
    const text = await (await fetch(url + '/metrics')).text();
    const get = (name, label) => {
      const line = text.split('\n').find((l) => l.startsWith(name + (label ? `{${label}}` : '') + ' '));
      return line ? Number(line.split(' ').pop()) : NaN;
    };
    const c = {
      steps_decode: get('lowbit_batch_steps_total', 'step="decode"'), steps_prompt: get('lowbit_batch_steps_total', 'step="prompt"'),
      rows_decode: get('lowbit_batch_rows_total', 'kind="decode"'), rows_prompt: get('lowbit_batch_rows_total', 'kind="prompt"'),
      forward_decode_s: get('lowbit_batch_forward_seconds_total', 'step="decode"'),
      forward_prompt_s: get('lowbit_batch_forward_seconds_total', 'step="prompt"'),
      deliver_s: get('lowbit_batch_deliver_seconds_total'),
    };
    return Object.values(c).every(Number.isFinite) ? c : null;
  } catch {
    return null;
  }
}

// Where the decode loop's time went between two stepCounters readings over wallS seconds: shares of the wall
// time in decode-only forward passes, passes with prompt rows, sampling and delivery, and the rest (waiting for
// requests, admitting them).
function stepShares(a, b, wallS) {
  if (!a || !b) return null;
  const d = Object.fromEntries(Object.keys(a).map((k) => [k, b[k] - a[k]]));
  const share = (x) => x / wallS;
  return {
    steps_decode: d.steps_decode, steps_prompt: d.steps_prompt, rows_decode: d.rows_decode, rows_prompt: d.rows_prompt,
    decode_step_ms: d.steps_decode ? (1000 * d.forward_decode_s) / d.steps_decode : NaN,
    share_forward_decode: share(d.forward_decode_s), share_forward_prompt: share(d.forward_prompt_s),
    share_deliver: share(d.deliver_s), share_other: 1 - share(d.forward_decode_s + d.forward_prompt_s + d.deliver_s),
  };
}

// Runs `clients` loops for durationS seconds against url; returns the figures (and the raw error list).
export async function runLoad({ url, clients = 32, durationS = 60, maxTokens = 64 }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const c0 = await stepCounters(url);
  const t0 = nowMs(), end = t0 + durationS * 1000;
  const recs = [];
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; nowMs() < end; i++) recs.push(await streamOnce(url, agent, PROMPTS[(c + i) % PROMPTS.length], maxTokens));
  }));
  const wallS = (nowMs() - t0) / 1000;
  agent.destroy();
  const steps = stepShares(c0, await stepCounters(url), wallS);
  const ok = recs.filter((r) => r.ok);
  const errors = recs.filter((r) => !r.ok).map((r) => r.error);
  const sorted = (a) => Float64Array.from(a).sort();
  const ttft = sorted(ok.map((r) => r.ttft).filter((x) => !Number.isNaN(x)));
  const gaps = sorted(ok.flatMap((r) => r.gaps));
  const eng = sorted(ok.flatMap((r) => r.engineGaps));
  const delays = sorted(ok.flatMap((r) => r.delays));
  const tokens = ok.reduce((s, r) => s + r.tokens, 0);
  const promptTokens = ok.reduce((s, r) => s + r.prompt, 0), cachedTokens = ok.reduce((s, r) => s + r.cached, 0);
  return {
    clients, duration_s: durationS, wall_s: wallS, requests: recs.length, errors: errors.length, error_samples: errors.slice(0, 5),
    tokens, tok_per_s: tokens / wallS, prompt_tokens: promptTokens, cached_prompt_tokens: cachedTokens,
    ttft_ms: { p50: quantile(ttft, 0.5), p99: quantile(ttft, 0.99) },
    token_ms: { p50: quantile(gaps, 0.5), p99: quantile(gaps, 0.99) },
    engine_token_ms: { p50: quantile(eng, 0.5), p99: quantile(eng, 0.99) },
    sse_overhead_ms: { p50_gap_minus_engine: quantile(gaps, 0.5) - quantile(eng, 0.5),
                       delivery_p50: quantile(delays, 0.5), delivery_p99: quantile(delays, 0.99) },
    steps,
  };
}

// Starts `lowbit serve` on a free loopback port; resolves to { url, stop() }.
export function startServer({ bin, model, parallel, threads, queue = 64 }) {
  const args = ['serve', '-m', model, '--host', '127.0.0.1', '--port', '0', '-t', String(threads),
                '--parallel', String(parallel), '--queue', String(queue)];
  const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`server did not start:\n${log}`)); }, 30000);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${log}`)); });
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        proc.removeAllListeners('exit');
        resolve({ url: m[1], stop: () => new Promise((done) => { proc.on('exit', done); proc.kill('SIGTERM'); }) });
      }
    });
  });
}

const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');

function print(label, r) {
  console.log(`${label}: ${r.clients} clients, ${r.wall_s.toFixed(1)} s, ${r.requests} requests, ${r.errors} errors` +
              (r.errors ? ` (${r.error_samples.join('; ')})` : ''));
  console.log(`  time to first token  p50 ${f1(r.ttft_ms.p50)} ms   p99 ${f1(r.ttft_ms.p99)} ms`);
  console.log(`  per-token latency    p50 ${f2(r.token_ms.p50)} ms   p99 ${f2(r.token_ms.p99)} ms   (client, between SSE events)`);
  console.log(`  engine per-token     p50 ${f2(r.engine_token_ms.p50)} ms   p99 ${f2(r.engine_token_ms.p99)} ms   (server, same run)`);
  console.log(`  SSE overhead         p50 client - p50 engine ${f2(r.sse_overhead_ms.p50_gap_minus_engine)} ms; ` +
              `release-to-arrival p50 ${f2(r.sse_overhead_ms.delivery_p50)} ms, p99 ${f2(r.sse_overhead_ms.delivery_p99)} ms`);
  console.log(`  throughput           ${r.tokens} tokens, ${r.tok_per_s.toFixed(1)} tok/s`);
  console.log(`  prompt cache         ${r.cached_prompt_tokens} of ${r.prompt_tokens} prompt tokens reused`);
  const s = r.steps;
  if (s) {
    const pc = (x) => `${(100 * x).toFixed(1)}%`;
    console.log(`  server steps         ${s.steps_decode} decode-only (${f2(s.decode_step_ms)} ms each), ${s.steps_prompt} with ` +
                `prompt rows; rows ${s.rows_decode} decode, ${s.rows_prompt} prompt`);
    console.log(`  server time          forward decode-only ${pc(s.share_forward_decode)}, with prompt rows ` +
                `${pc(s.share_forward_prompt)}, sample+deliver ${pc(s.share_deliver)}, other ${pc(s.share_other)}`);
  }
}

async function main() {
  const a = process.argv.slice(2);
  const opt = (name, def) => { const i = a.indexOf(name); return i >= 0 ? a[i + 1] : def; };
  const scaling = a.includes('--scaling');
  const json = a.includes('--json');
  const clients = Number(opt('--clients', scaling ? 8 : 32));
  const durationS = Number(opt('--duration', scaling ? 20 : 60));
  const maxTokens = Number(opt('--max-tokens', 64));
  const threads = Number(opt('--threads', 2));
  const parallel = Number(opt('--parallel', clients));
  const bin = opt('--bin', process.env.LOWBIT_BIN || path.join(root, 'build/release/lowbit'));
  const model = opt('--model', path.join(root, process.env.LB_SHARED || '../shared', 'models/techdocs-28M-Q4_K_M.gguf'));
  let url = opt('--url', null), server = null;
  if (!url) {
    server = await startServer({ bin, model, parallel, threads });
    url = server.url;
  }
  try {
    const out = {};
    if (scaling) {
      const rounds = Math.max(1, Number(opt('--rounds', 1)));
      out.rounds = [];
      for (let r = 0; r < rounds; r++) {
        out.one = await runLoad({ url, clients: 1, durationS, maxTokens });
        out.many = await runLoad({ url, clients, durationS, maxTokens });
        out.ratio = out.many.tok_per_s / out.one.tok_per_s;
        out.rounds.push({ one_tok_per_s: out.one.tok_per_s, many_tok_per_s: out.many.tok_per_s, ratio: out.ratio,
                          errors: out.one.errors + out.many.errors });
        if (!json) {
          if (rounds > 1) console.log(`round ${r + 1} of ${rounds}`);
          print('1 stream', out.one);
          print(`${clients} streams`, out.many);
          console.log(`aggregate throughput ${clients} streams / 1 stream: ${out.ratio.toFixed(2)}x`);
        }
        if (out.one.errors || out.many.errors) break;
      }
      if (out.rounds.length > 1) {
        const rs = Float64Array.from(out.rounds.map((x) => x.ratio)).sort();
        out.ratio_median = quantile(rs, 0.5);
        if (!json)
          console.log(`rounds: ${out.rounds.map((x) => x.ratio.toFixed(2) + 'x').join(', ')}; median ${out.ratio_median.toFixed(2)}x`);
      }
    } else {
      out.load = await runLoad({ url, clients, durationS, maxTokens });
      if (!json) print('load', out.load);
    }
    if (json) console.log(JSON.stringify(out, null, 2));
    const errs = (out.load?.errors ?? 0) + (out.rounds ? out.rounds.reduce((n, x) => n + x.errors, 0) : 0);
    process.exitCode = errs ? 1 : 0;
  } finally {
    if (server) await server.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
