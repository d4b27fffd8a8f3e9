// Capability detection in node with stand-in navigators: a probe that never answers fails after its time limit
// with the reason, instead of stalling load() (and the page waiting on it) for ever; a working adapter is reported.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectCapabilities } from '../../web/src/capabilities.js';

const never = () => new Promise(() => {});

test('probes that never answer time out with their reasons', { timeout: 5000 }, async () => {
  const nav = { userAgent: 'Mozilla/5.0 Firefox/128.0', hardwareConcurrency: 2,
    storage: { estimate: never, persisted: never, getDirectory() {} }, gpu: { requestAdapter: never } };
  const t0 = Date.now();
  const caps = await detectCapabilities({ navigator: nav, probeMs: { storage: 100, gpu: 150 } });
  const ms = Date.now() - t0;
  assert.ok(ms >= 100 && ms < 2000, `answered after ${ms} ms`);
  assert.equal(caps.engine, 'firefox');
  assert.equal(caps.webgpu.available, false);
  assert.match(caps.webgpu.reason, /requestAdapter\(\) did not answer within 150 ms/);
  assert.match(caps.storage.error, /estimate\(\) did not answer within 100 ms/);
});

test('an adapter that answers is reported with its features and limits', async () => {
  const adapter = { info: { vendor: 'v', architecture: 'a', description: 'd' }, features: new Set(['shader-f16']),
    limits: { maxBufferSize: 1 << 28, maxStorageBufferBindingSize: 1 << 27, maxComputeWorkgroupStorageSize: 16384,
      maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256 } };
  const nav = { userAgent: 'Chrome/150.0', storage: { estimate: async () => ({ usage: 1, quota: 2 }), persisted: async () => false },
    gpu: { requestAdapter: async () => adapter } };
  const caps = await detectCapabilities({ navigator: nav, probeMs: { storage: 100, gpu: 100 } });
  assert.equal(caps.webgpu.available, true);
  assert.deepEqual(caps.webgpu.adapter.features, ['shader-f16']);
  assert.equal(caps.webgpu.adapter.limits.maxBufferSize, 1 << 28);
  assert.deepEqual(caps.storage.estimate, { usage: 1, quota: 2 });
  assert.equal(caps.storage.persisted, false);
});
