// Prepended to the wasm unit-test builds: node >= 18 has a global fetch(), which emscripten 3.1.6 then prefers over fs to load the .wasm and fails on a file path; shadow it.
var fetch = undefined;
