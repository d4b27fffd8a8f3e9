// Link-time stand-ins for the relaxed-SIMD placeholders (src/kernels/wasm/wasm_relaxed.h): scripts/wasm/relaxed.mjs
// replaces every call of them in the linked .wasm and removes the imports, so these never run.
mergeInto(LibraryManager.library, {
  lb__wasm_relaxed_dot_i16: function () { abort('relaxed SIMD placeholder called: relaxed.mjs did not run'); },
  lb__wasm_relaxed_madd: function () { abort('relaxed SIMD placeholder called: relaxed.mjs did not run'); },
});
