// Shared pieces of the browser tests: the oracle prompts, native lowbit as the reference, DuckDB recording, browser launchers.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { modelPath, repoRoot, sharedRoot } from './server.mjs';

export const N_GEN = 48;
export const NATIVE = process.env.LB_NATIVE || path.join(repoRoot, 'build/release/lowbit');
export const BENCH_DB = process.env.LB_BENCH_DB || path.join(repoRoot, 'build/bench/results.duckdb');

/** The oracle prompts (../shared/oracles/llamacpp-techdocs.json, greedy section). */
export function oraclePrompts() {
  const o = JSON.parse(readFileSync(path.join(sharedRoot, 'oracles/llamacpp-techdocs.json'), 'utf8'));
  const first = Object.values(o.greedy.continuations)[0];
  return first.map((x) => x.prompt);
}

/** The models the greedy tests run: LB_BROWSER_MODELS (comma-separated file names) or llama.cpp's Q4_K_M and lowbit's
 * own 2-bit files (techdocs-28M-lbq2.gguf and -lbqv.gguf, made by tests/browser/run.sh in build/browser); missing files
 * are left out. */
export function testModels() {
  const names = (process.env.LB_BROWSER_MODELS || 'techdocs-28M-Q4_K_M.gguf,techdocs-28M-lbq2.gguf,techdocs-28M-lbqv.gguf')
    .split(',').filter(Boolean);
  const have = names.filter((n) => existsSync(modelPath(n)));
  for (const n of names) if (!have.includes(n)) console.log(`# model ${n} not found: left out`);
  return have;
}

export function modelSha256(name) {
  const line = readFileSync(path.join(sharedRoot, 'models/SHA256SUMS'), 'utf8').split('\n').find((l) => l.trim().endsWith(name));
  return line ? line.split(/\s+/)[0] : null;
}

/** Greedy text of native lowbit (one thread, the same context as the browser default: the trained one). */
export function nativeGreedy(model, prompt, n = N_GEN) {
  const r = spawnSync(NATIVE, ['run', '-m', modelPath(model), '-p', prompt, '-n', String(n),
    '--temp', '0', '--no-echo', '-t', '1'], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`native lowbit run failed: ${r.stderr}`);
  // `lowbit run` ends its output with one newline of its own.
  return r.stdout.endsWith('\n') ? r.stdout.slice(0, -1) : r.stdout;
}

/** Native single-thread decode speed, tok/s (the median of three runs of 128 tokens). */
export function nativeDecodeTokPerSec(model, threads = 1) {
  const v = [];
  for (let i = 0; i < 3; i++) {
    const r = spawnSync(NATIVE, ['run', '-m', modelPath(model), '-p', 'The kernel scheduler', '-n', '128',
      '--temp', '0', '--no-echo', '--ignore-eos', '-t', String(threads)], { encoding: 'utf8' });
    const m = /generation \d+ tok, ([\d.]+) tok\/s/.exec(r.stderr);
    if (m) v.push(Number(m[1]));
  }
  v.sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)] ?? null;
}

export function gitCommit() {
  try {
    return execFileSync('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/**
 * Appends figures to build/bench/results.duckdb, table browser_results
 * (ts, commit, browser, browser_version, backend, model, metric, value).
 * rows: [{ browser, browserVersion, backend, model, metric, value }]
 */
export async function record(rows) {
  if (!rows.length) return;
  const { DuckDBInstance } = await import('@duckdb/node-api');
  mkdirSync(path.dirname(BENCH_DB), { recursive: true });
  const inst = await DuckDBInstance.create(BENCH_DB);
  const con = await inst.connect();
  try {
    await con.run(`CREATE TABLE IF NOT EXISTS browser_results (ts TIMESTAMP, commit VARCHAR, browser VARCHAR,
      browser_version VARCHAR, backend VARCHAR, model VARCHAR, metric VARCHAR, value DOUBLE)`);
    const commit = gitCommit();
    const ts = new Date().toISOString().replace('T', ' ').replace('Z', '');
    for (const r of rows) {
      await con.run('INSERT INTO browser_results VALUES (CAST($1 AS TIMESTAMP), $2, $3, $4, $5, $6, $7, $8)',
        [ts, commit, r.browser, r.browserVersion || '', r.backend || '', r.model || '', r.metric, Number(r.value)]);
    }
  } finally {
    con.closeSync();
    inst.closeSync();
  }
}

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

/** A new browser profile directory, removed when the process exits (each holds copies of the models in OPFS). */
export function freshProfileDir(tag) {
  const dir = mkdtempSync(path.join(tmpdir(), `lowbit-sdk-${tag}-`));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Waits for the harness page's SDK import. */
export const HARNESS = '/tests/browser/pages/harness.html';

/** Starts WebKitWebDriver on a free port under the current DISPLAY; returns { url, stop }. */
export async function startWebKitDriver(port) {
  const p = spawn('/usr/bin/WebKitWebDriver', [`--port=${port}`], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 50; i++) {
    try {
      const r = await fetch(url + '/status');
      if (r.ok) return { url, stop: () => p.kill() };
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  p.kill();
  throw new Error('WebKitWebDriver did not start');
}

/** Drives web/examples/chat in a page-like object with goto/fill/click/waitFor/eval/shot adapters (shared with the other engines' tests). */
export async function driveChat(p0, base, shotPath) {
  // On a timeout, say what the page showed.
  const p = { ...p0, waitFor: async (fn) => {
    try {
      await p0.waitFor(fn);
    } catch (e) {
      const state = await p0.eval(() => JSON.stringify({ status: document.getElementById('status').textContent,
        data: { ...document.body.dataset }, reply: document.querySelector('.msg.assistant')?.textContent })).catch(() => '?');
      throw new Error(`${e.message} waiting for ${fn}; page: ${state}`);
    }
  } };
  await p.goto(`${base}/web/examples/chat/?autoload&max=400`);
  await p.waitFor(() => document.body.dataset.ready === 'true' || /could not load/.test(document.getElementById('status').textContent));
  const status = await p.eval(() => document.getElementById('status').textContent);
  assert.doesNotMatch(status, /could not load/, status);
  await p.fill('#prompt', 'Explain what a kernel module is.');
  await p.click('#send');
  await p.waitFor(() => (document.querySelector('.msg.assistant')?.textContent || '').length > 20);
  await p.click('#stop');
  await p.waitFor(() => document.body.dataset.streaming === 'false');
  const r = await p.eval(() => ({
    finish: document.body.dataset.finish,
    text: document.querySelector('.msg.assistant').textContent,
    user: document.querySelector('.msg.user').textContent,
    status: document.getElementById('status').textContent,
  }));
  await p.shot(shotPath);
  assert.equal(r.user, 'Explain what a kernel module is.');
  assert.ok(r.text.length > 20, 'the reply streamed in');
  assert.equal(r.finish, 'cancelled', `stop ended the stream (${r.status})`);
  return r;
}

