// Static test server for the browser tests: COOP/COEP (cross-origin isolation), Range requests, a request log,
// and switches to cut a download midway or to make the models unreachable ("offline").
//
// Paths: /models/NAME -> build/browser/NAME or ../shared/models/NAME (or LB_SHARED/models), /synth/NAME -> a registered in-memory file,
// anything else -> the repository root (/build/web/ -> $LB_WEB_BUILD when set).  Run alone: node tests/browser/server.mjs [--port 8080] [--no-isolation]

import { createServer } from 'node:http';
import { createReadStream, existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');
export const sharedRoot = path.resolve(process.env.LB_SHARED || path.join(repoRoot, '../shared'));

// Models made by the tests themselves (lowbit's own 2-bit file) live in build/browser; the shipped ones in ../shared/models.
export const localModels = path.join(repoRoot, 'build/browser');
export function modelPath(name) {
  const own = path.join(localModels, name);
  return existsSync(own) ? own : path.join(sharedRoot, 'models', name);
}

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json',
  '.wasm': 'application/wasm', '.css': 'text/css', '.gguf': 'application/octet-stream', '.png': 'image/png', '.txt': 'text/plain; charset=utf-8',
};

/**
 * Starts the server.  Returns { url, log, cutNext(pathPrefix, fraction), setOffline(bool), addFile(name, bytes), close() }.
 * log entries: { method, path, range, status, sent, cut }.
 */
export async function startServer({ port = 0, isolation = true, quiet = true } = {}) {
  const log = [];
  const cuts = [];           // { prefix, fraction } applied once to the next full-body response of a matching path
  const synth = new Map();   // name -> Uint8Array
  let offline = false;

  const server = createServer(async (req, res) => {
    const u = new URL(req.url, 'http://x');
    const entry = { method: req.method, path: u.pathname, range: req.headers.range || null, status: 0, sent: 0, cut: false };
    log.push(entry);
    const headers = {
      'Cache-Control': 'no-store',
      'Access-Control-Allow-Origin': '*',
      'Accept-Ranges': 'bytes',
    };
    if (isolation) {
      headers['Cross-Origin-Opener-Policy'] = 'same-origin';
      headers['Cross-Origin-Embedder-Policy'] = 'require-corp';
      headers['Cross-Origin-Resource-Policy'] = 'same-origin';
    }
    const fail = (status, text) => {
      entry.status = status;
      res.writeHead(status, { ...headers, 'Content-Type': 'text/plain' });
      res.end(text);
    };
    try {
      let file = null;
      let bytes = null;
      let p = decodeURIComponent(u.pathname);
      if (p.includes('..')) return fail(400, 'bad path');
      if (p.startsWith('/models/') || p.startsWith('/synth/')) {
        if (offline) return fail(503, 'offline (test switch)');
        if (p.startsWith('/synth/')) {
          bytes = synth.get(p.slice(7));
          if (!bytes) return fail(404, 'no such synthetic file');
        } else file = modelPath(p.slice(8));
      } else {
        if (p.endsWith('/')) p += 'index.html';
        // LB_WEB_BUILD=dir serves another `make web WEB_BUILD=dir` where the SDK looks for build/web (one engineer's build)
        if (process.env.LB_WEB_BUILD && p.startsWith('/build/web/')) p = `/${process.env.LB_WEB_BUILD.replace(/^\/+|\/+$/g, '')}/${p.slice(11)}`;
        file = path.join(repoRoot, p);
      }
      let size, mtime = 0;
      if (file) {
        const st = await fsp.stat(file).catch(() => null);
        if (!st || !st.isFile()) return fail(404, 'not found');
        size = st.size;
        mtime = st.mtimeMs;
      } else size = bytes.length;
      headers['Content-Type'] = TYPES[path.extname(p)] || 'application/octet-stream';
      headers.ETag = `"${size.toString(16)}-${Math.floor(mtime).toString(16)}"`;
      let start = 0, end = size - 1, status = 200;
      const m = req.headers.range && /^bytes=(\d*)-(\d*)$/.exec(req.headers.range);
      if (m && (m[1] !== '' || m[2] !== '')) {
        if (m[1] === '') { start = Math.max(0, size - Number(m[2])); } else {
          start = Number(m[1]);
          if (m[2] !== '') end = Math.min(size - 1, Number(m[2]));
        }
        if (start >= size || start > end) {
          entry.status = 416;
          res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` });
          return res.end();
        }
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
      }
      const len = end - start + 1;
      headers['Content-Length'] = String(len);
      entry.status = status;
      res.writeHead(status, headers);
      if (req.method === 'HEAD') return res.end();
      // A cut sends the headers of the full body, then half of it, then drops the connection.
      const ci = cuts.findIndex((c) => p.startsWith(c.prefix) && status === 200);
      let limit = len;
      let mode = 'close';
      if (ci >= 0) {
        limit = Math.floor(size * cuts[ci].fraction);
        mode = cuts[ci].mode;
        cuts.splice(ci, 1);
        entry.cut = mode;
      }
      const stream = file ? createReadStream(file, { start, end: start + limit - 1, highWaterMark: 1 << 20 }) : null;
      if (!stream) {
        entry.sent = limit;
        if (limit < len) {
          res.write(bytes.subarray(start, start + limit), () => { if (mode === 'close') res.socket?.end(); });
        } else res.end(bytes.subarray(start, end + 1));
        return;
      }
      stream.on('data', (c) => { entry.sent += c.length; });
      // Half-close after the bytes are flushed, so the client receives exactly the cut prefix, then a short body.
      stream.on('end', () => {
        if (limit < len && mode === 'close') res.socket?.end();
      });
      stream.pipe(res, { end: limit >= len });
      req.on('close', () => stream.destroy());
    } catch (e) {
      if (!res.headersSent) fail(500, String(e));
      else res.destroy();
    }
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  if (!quiet) console.log(`serving ${repoRoot} at ${url} (isolation ${isolation ? 'on' : 'off'})`);
  return {
    url,
    log,
    /** The next full GET under prefix sends fraction of the file, then closes the connection ('close') or sends nothing more ('stall'). */
    cutNext(prefix, fraction = 0.5, mode = 'close') { cuts.push({ prefix, fraction, mode }); },
    setOffline(v) { offline = !!v; },
    addFile(name, data) { synth.set(name, data); },
    close() {
      server.closeAllConnections?.();
      return new Promise((r) => server.close(r));
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  await startServer({ port: i > 0 ? Number(process.argv[i + 1]) : 8080, isolation: !process.argv.includes('--no-isolation'), quiet: false });
}
