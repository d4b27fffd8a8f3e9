// Post-link step of the relaxed-SIMD builds: each call of a placeholder import becomes its relaxed-SIMD instruction.
//
// Usage: node scripts/wasm/relaxed.mjs OUT.wasm GLUE.js|mjs [--names]   (--names keeps function names, for profiles)
// clang 14 (emscripten 3.1.6) cannot emit relaxed SIMD, so the kernels call imported functions
// (src/kernels/wasm/wasm_relaxed.h) that emcc links against throw-away stubs (relaxed-stubs.js).
// This script reads the linked module with binaryen.js, finds those imports (by name, or through
// the glue's import table when emcc minified the names), substitutes the instruction for every
// call in the module's text form, drops the imports and writes the module back in place.  It
// fails, leaving the file as it was, when a placeholder is left or the result does not validate.
import fs from 'node:fs';
import binaryen from 'binaryen';

// placeholder C function -> the instruction that replaces a call of it (same operands, same result)
const OPS = {
  lb__wasm_relaxed_dot_i16: 'i16x8.relaxed_dot_i8x16_i7x16_s',
  lb__wasm_relaxed_madd: 'f32x4.relaxed_madd',
};

const [wasmPath, gluePath, flag] = process.argv.slice(2);
if (!wasmPath || !gluePath) {
  console.error('usage: relaxed.mjs OUT.wasm GLUE.js');
  process.exit(2);
}

// emcc -O2+ renames imports ("a"."d"); the glue's import object says which short name is which function.
const glue = fs.readFileSync(gluePath, 'utf8');
const alias = new Map();   // import base name -> placeholder name
for (const name of Object.keys(OPS)) {
  alias.set(name, name);
  for (const m of glue.matchAll(new RegExp(`["']?([\\w$]+)["']?\\s*:\\s*_${name}\\b`, 'g'))) alias.set(m[1], name);
}

// What emscripten 3.1.6 emits, plus relaxed SIMD: "All" would let binaryen write encodings of later
// proposals (the import section, for one) that browsers reject.
const F = binaryen.Features;
const FEATURES = F.Atomics | F.MutableGlobals | F.NontrappingFPToInt | F.SIMD128 | F.BulkMemory | F.BulkMemoryOpt |
  F.SignExt | F.RelaxedSIMD;
const mod = binaryen.readBinary(fs.readFileSync(wasmPath));
mod.setFeatures(FEATURES);
const internal = new Map();   // the import's name inside the module -> instruction
for (let i = 0; i < mod.getNumFunctions(); i++) {
  const f = binaryen.getFunctionInfo(mod.getFunctionByIndex(i));
  if (f.module && alias.has(f.base)) internal.set(f.name, OPS[alias.get(f.base)]);
}
if (internal.size === 0) {   // a module may use either or both
  console.error(`relaxed.mjs: ${wasmPath} imports none of ${Object.keys(OPS).join(', ')}`);
  process.exit(1);
}

let text = mod.emitText();
mod.dispose();
let calls = 0;
for (const [name, op] of internal) {
  const esc = name.replace(/[$.*+?^(){}|[\]\\]/g, '\\$&');
  text = text.replace(new RegExp(`\\(call \\$${esc}(?=[\\s)])`, 'g'), () => (calls++, `(${op}`));
  text = text.replace(new RegExp(`^\\s*\\(import "[^"]*" "[^"]*" \\(func \\$${esc} .*\\n`, 'm'), '');
  if (new RegExp(`\\$${esc}(?=[\\s)])`).test(text)) {
    console.error(`relaxed.mjs: ${name} is still referenced after the substitution`);
    process.exit(1);
  }
}

const out = binaryen.parseText(text);
out.setFeatures(FEATURES);
if (!out.validate()) {
  console.error('relaxed.mjs: the rewritten module does not validate');
  process.exit(1);
}
binaryen.setDebugInfo(flag === '--names');
fs.writeFileSync(wasmPath, out.emitBinary());
console.error(`relaxed.mjs: ${wasmPath}: ${calls} calls -> relaxed SIMD`);
