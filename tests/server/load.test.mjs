// A short load run (bench/load/load.mjs): 8 streaming clients for 5 s against 4 batched slots, so requests also queue
// and join the batch between steps.  It asserts correctness only (no errors, every stream complete); timings are
// printed, never asserted: this machine is shared.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, metric } from './helpers.mjs';
import { runLoad } from '../../bench/load/load.mjs';

let srv;
before(async () => { srv = await startServer(['--parallel', '4', '--queue', '16', '-c', '512']); });
after(async () => { assert.equal(await srv.stop(), 0); });

test('8 concurrent streaming clients for 5 s: zero errors, batched slots all used', async () => {
  const r = await runLoad({ url: srv.url, clients: 8, durationS: 5, maxTokens: 32 });
  console.log(`# load: ${r.requests} requests, ${r.tokens} tokens, ${r.tok_per_s.toFixed(1)} tok/s, ` +
              `ttft p50 ${r.ttft_ms.p50.toFixed(1)} ms, token p50 ${r.token_ms.p50.toFixed(2)} ms, ` +
              `SSE delivery p50 ${r.sse_overhead_ms.delivery_p50.toFixed(3)} ms`);
  assert.equal(r.errors, 0, `errors: ${r.error_samples.join('; ')}`);
  assert.ok(r.requests >= 8, `only ${r.requests} requests finished`);
  assert.ok(r.tokens > 0);
  // The batched-step counters account for the run: a prompt row per prompt token the prompt cache did not supply
  // (at least the last of each prompt), a decode row per generated token after each request's first (which the
  // prompt's last row gives), and the forward time within the wall time.
  const s = r.steps;
  assert.ok(s, 'the step counters are in /metrics');
  assert.equal(s.rows_prompt, r.prompt_tokens - r.cached_prompt_tokens,
               `${s.rows_prompt} prompt rows for ${r.prompt_tokens} prompt tokens, ${r.cached_prompt_tokens} cached`);
  assert.ok(s.rows_prompt >= r.requests && r.cached_prompt_tokens > 0, `${s.rows_prompt} prompt rows for ${r.requests} requests`);
  assert.ok(s.rows_decode >= r.tokens - r.requests && s.rows_decode <= r.tokens + r.requests,
            `${s.rows_decode} decode rows for ${r.tokens} tokens of ${r.requests} requests`);
  assert.ok(s.steps_decode > 0 && s.steps_prompt > 0 && s.rows_decode > s.steps_decode, 'steps batched several streams');
  assert.ok(s.share_forward_decode > 0 && s.share_other > -0.02, JSON.stringify(s));
  const m = await (await fetch(srv.url + '/metrics')).text();
  assert.equal(metric(m, 'lowbit_slots'), 4);
  assert.equal(metric(m, 'lowbit_slots_busy'), 0);
  assert.equal(metric(m, 'lowbit_queue_depth'), 0);
});
