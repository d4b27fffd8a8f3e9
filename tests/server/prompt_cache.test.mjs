// The prompt cache (docs/server.md, "Prompt cache"): a prompt starts from the longest prefix of it that any slot's
// KV cache holds, its own or another slot's (copied), and the text is what evaluating the whole prompt gives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, metric } from './helpers.mjs';

let cached, plain;   // two servers: prompt cache on (the default) and --no-prompt-cache

before(async () => {
  [cached, plain] = await Promise.all([startServer(['--parallel', '2', '-c', '512']),
                                       startServer(['--parallel', '2', '-c', '512', '--no-prompt-cache'])]);
});
after(async () => {
  assert.equal(await cached.stop(), 0);
  assert.equal(await plain.stop(), 0);
});

async function complete(srv, prompt, extra = {}) {
  const res = await fetch(srv.url + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: 32, temperature: 0, ...extra }),
  });
  assert.equal(res.status, 200);
  const j = await res.json();
  return { text: j.choices[0].text, usage: j.usage };
}

const A = 'The kernel module loader reads the configuration file and then';
const B = 'The kernel module loader reads the configuration file and reports';

test('a repeated prompt is served from the cache with the same greedy text', async () => {
  const ref = await complete(plain, A);
  assert.equal(ref.usage.prompt_tokens_details.cached_tokens, 0);
  const again = await complete(plain, A);
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, 0, '--no-prompt-cache reuses nothing');

  const first = await complete(cached, A);
  assert.equal(first.text, ref.text);
  const second = await complete(cached, A);
  assert.equal(second.usage.prompt_tokens_details.cached_tokens, ref.usage.prompt_tokens - 1);
  assert.equal(second.text, ref.text);
});

test('a prompt sharing a prefix evaluates only the rest, with the same text', async () => {
  const ref = await complete(plain, B);
  const got = await complete(cached, B);
  const n = got.usage.prompt_tokens_details.cached_tokens;
  assert.ok(n >= got.usage.prompt_tokens / 2 && n < got.usage.prompt_tokens - 1, `cached ${n} of ${got.usage.prompt_tokens}`);
  assert.equal(got.text, ref.text);
});

test('the prefix of a generation still running in another slot is copied', async () => {
  const C = 'Memory is allocated once at start-up because the allocator';
  const ref = await complete(plain, C, { max_tokens: 8 });
  // A long generation holds slot 1 with C's tokens; meanwhile the same prompt arrives and takes the other slot.
  const long = complete(cached, C, { max_tokens: 200 });
  await new Promise((r) => setTimeout(r, 150));
  const short = await complete(cached, C, { max_tokens: 8 });
  assert.equal(short.usage.prompt_tokens_details.cached_tokens, short.usage.prompt_tokens - 1);
  assert.equal(short.text, ref.text);
  const l = await long;
  assert.equal(l.usage.completion_tokens, 200, 'the long generation ran all along (no early stop)');
  assert.equal(l.text.slice(0, short.text.length), short.text);
  const m = await (await fetch(cached.url + '/metrics')).text();
  assert.ok(metric(m, 'lowbit_prompt_tokens_cached_total') >= 2 * (short.usage.prompt_tokens - 1));
});

test('a conversation a slot held before another request took it comes back from the prompt store', async () => {
  const one = await startServer(['--parallel', '1', '-c', '512']);
  const none = await startServer(['--parallel', '1', '-c', '512', '--prompt-store', '0']);
  try {
    const D = 'Install the package with the command';
    for (const srv of [one, none]) {
      await complete(srv, A);
      await complete(srv, D);   // the only slot now holds D: A's keys and values went to the store, if there is one
    }
    const back = await complete(one, A), lost = await complete(none, A);
    assert.equal(back.usage.prompt_tokens_details.cached_tokens, back.usage.prompt_tokens - 1);
    assert.ok(lost.usage.prompt_tokens_details.cached_tokens < back.usage.prompt_tokens / 2, '--prompt-store 0 keeps nothing');
    assert.equal(back.text, lost.text);
    const m = await (await fetch(one.url + '/metrics')).text();
    assert.ok(metric(m, 'lowbit_prompt_store_entries') >= 2, m);
    assert.ok(metric(m, 'lowbit_prompt_store_bytes') > 0);
    assert.equal(metric(await (await fetch(none.url + '/metrics')).text(), 'lowbit_prompt_store_bytes'), 0);
  } finally {
    assert.equal(await one.stop(), 0);
    assert.equal(await none.stop(), 0);
  }
});

test('a quantized KV cache turns the prompt cache off and says so', async () => {
  const q = await startServer(['--kv-k', 'q8', '--kv-v', 'q8', '-c', '256']);
  try {
    assert.match(q.log(), /prompt cache off \(needs an F16 cache without a window\)/);
    const r = await complete(q, A);
    const r2 = await complete(q, A);
    assert.equal(r2.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal(r2.text, r.text);
  } finally {
    assert.equal(await q.stop(), 0);
  }
});
