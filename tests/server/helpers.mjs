// Starts `lowbit serve` on a free loopback port for one test file and stops it afterwards.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.LOWBIT_BIN || path.join(root, 'build/release/lowbit');
export const MODEL = path.join(root, process.env.LB_SHARED || '../shared', 'models/techdocs-28M-Q4_K_M.gguf');
const live = new Set();

// Resolves to { url, stop(), log() } once the server prints its address; rejects after 20 s or if it exits.
export function startServer(extra = []) {
  const args = ['serve', '-m', MODEL, '--host', '127.0.0.1', '--port', '0', '-t', '2', ...extra];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(proc);
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`server did not start:\n${log}`)); }, 20000);
    proc.on('exit', (code) => { live.delete(proc); clearTimeout(timer); reject(new Error(`server exited (${code}):\n${log}`)); });
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1],
          pid: proc.pid,
          log: () => log,
          alive: () => proc.exitCode === null && proc.signalCode === null,
          stop: () => new Promise((done) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return done(proc.exitCode);
            const kill = setTimeout(() => proc.kill('SIGKILL'), 5000);
            proc.removeAllListeners('exit');
            proc.on('exit', (code) => { live.delete(proc); clearTimeout(kill); done(code); });
            proc.kill('SIGTERM');
          }),
        });
      }
    });
  });
}

// Never leave a server behind, whatever happens to the test process.
process.on('exit', () => { for (const p of live) p.kill('SIGKILL'); });

// The metric's value from a Prometheus text, or NaN.
export function metric(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : NaN;
}
