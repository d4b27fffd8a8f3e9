// The official openai npm client against lowbit serve: completions and chat, streaming and not, errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer } from './helpers.mjs';

const KEY = 'sk-test-' + Math.random().toString(36).slice(2);
let srv, client;

before(async () => {
  srv = await startServer(['--api-key', KEY, '--max-tokens', '64', '-c', '512']);
  client = new OpenAI({ baseURL: srv.url + '/v1', apiKey: KEY, maxRetries: 0, timeout: 30000 });
});
after(async () => { assert.equal(await srv.stop(), 0, 'the server exits cleanly on SIGTERM'); });

test('models list names the model and the chat template', async () => {
  const page = await client.models.list();
  assert.equal(page.data.length, 1);
  assert.equal(page.data[0].id, 'techdocs-28M');
  assert.equal(page.data[0].chat_template, 'plain');
});

test('completions: non-streaming and streaming give the same greedy text', async () => {
  const req = { model: 'techdocs-28M', prompt: 'The driver', max_tokens: 24, temperature: 0 };
  const a = await client.completions.create(req);
  assert.equal(a.object, 'text_completion');
  assert.ok(a.choices[0].text.length > 0);
  assert.equal(a.usage.completion_tokens, 24);
  assert.equal(a.choices[0].finish_reason, 'length');
  const stream = await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = '', usage = null, finish = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) { text += ch.text; if (ch.finish_reason) finish = ch.finish_reason; }
  }
  assert.ok(chunks > 3, `only ${chunks} chunks: the text was not streamed`);
  assert.equal(text, a.choices[0].text);
  assert.equal(finish, 'length');
  // The same prompt again: all of it but the last token comes from the prompt cache, with the same text.
  const { prompt_tokens_details: cachedA, ...countsA } = a.usage;
  const { prompt_tokens_details: cachedB, ...countsB } = usage;
  assert.deepEqual(countsB, countsA);
  assert.equal(cachedB.cached_tokens, usage.prompt_tokens - 1);
  assert.ok(cachedA.cached_tokens < a.usage.prompt_tokens);
});

test('chat: non-streaming and streaming', async () => {
  const req = { model: 'x', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is a kernel module?' }],
    max_tokens: 20, temperature: 0 };
  const a = await client.chat.completions.create(req);
  assert.equal(a.object, 'chat.completion');
  assert.equal(a.choices[0].message.role, 'assistant');
  assert.equal(typeof a.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(a.choices[0].finish_reason));
  const stream = await client.chat.completions.create({ ...req, stream: true });
  let text = '', role = null;
  for await (const c of stream) {
    assert.equal(c.usage ?? undefined, undefined, 'no usage unless asked');
    const d = c.choices[0]?.delta;
    if (d?.role) role = d.role;
    if (d?.content) text += d.content;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, a.choices[0].message.content);
});

test('a stop string ends the text before it', async () => {
  const base = await client.completions.create({ model: 'm', prompt: 'The kernel', max_tokens: 40, temperature: 0 });
  const full = base.choices[0].text;
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 4);
  assert.ok(stop.length === 4, 'the greedy text is long enough');
  const cut = await client.completions.create({ model: 'm', prompt: 'The kernel', max_tokens: 40, temperature: 0, stop: [stop] });
  assert.equal(cut.choices[0].text, full.slice(0, full.indexOf(stop)));
  assert.equal(cut.choices[0].finish_reason, 'stop');
});

test('a wrong API key is refused with 401', async () => {
  const bad = new OpenAI({ baseURL: srv.url + '/v1', apiKey: KEY + 'x', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  const res = await fetch(srv.url + '/health');
  assert.equal(res.status, 200, '/health needs no key');
  assert.equal((await fetch(srv.url + '/metrics')).status, 401, '/metrics needs the key');
});

test('absurd max_tokens: negative is a 400, huge is clamped to --max-tokens', async () => {
  await assert.rejects(client.completions.create({ model: 'm', prompt: 'x', max_tokens: -5 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /max_tokens/.test(e.message));
  const r = await client.completions.create({ model: 'm', prompt: 'The', max_tokens: 1e12, temperature: 0 });
  assert.ok(r.usage.completion_tokens <= 64, `${r.usage.completion_tokens} tokens`);
});
