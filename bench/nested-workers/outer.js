// The outer worker (loaded as a classic or a module worker: the same file works as both): creates k nested
// workers, reports before and after each `new Worker()`, waits until every one answers, then says done.
self.onmessage = async (e) => {
  const { k, inner, clean } = e.data;
  const ws = [];
  for (let i = 0; i < k; i++) {
    self.postMessage({ t: 'before', i });
    ws.push(inner === 'module' ? new Worker(new URL('inner.js', self.location.href), { type: 'module' })
      : new Worker(new URL('inner.js', self.location.href)));
    self.postMessage({ t: 'after', i });
  }
  await Promise.all(ws.map((w) => new Promise((r) => { w.onmessage = r; w.postMessage(0); })));
  if (clean) for (const w of ws) w.terminate();
  self.postMessage({ t: 'done' });
};
