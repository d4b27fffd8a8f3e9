# lowbit build.  Targets by intent:
#   make            the CLI (build/release/lowbit) and the library
#   make test       build and run the unit tests natively
#   make asan       the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make wasm-test  the core and unit tests built with emscripten, run under node
#   make fuzz       libFuzzer targets (clang)
#   make compile_commands.json   for clangd/clang-tidy (uses bear)

CC      ?= cc
BUILD   ?= build/release
OPT     ?= -O2
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wcast-qual -Wno-unused-parameter
CPPFLAGS := -Iinclude -Isrc -D_GNU_SOURCE
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 $(WARN) -pthread $(EXTRA_CFLAGS)
LDLIBS  := -lpcre2-8 -lm -lpthread
ifeq ($(WERROR),1)
CFLAGS  += -Werror
endif

LIB_DIRS := base format quant kernels tokenizer model kv generate api
LIB_SRC  := $(foreach d,$(LIB_DIRS),$(wildcard src/$(d)/*.c))
X86_SRC  := $(wildcard src/kernels/x86/*.c)
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/unit/test_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(X86_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all test asan wasm-test fuzz clean lib
all: $(BUILD)/lowbit

lib: $(BUILD)/liblowbit.a

$(BUILD)/liblowbit.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/lowbit: $(CLI_OBJ) $(BUILD)/liblowbit.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/liblowbit.a $(LDLIBS)

# The x86 kernels are the only files compiled for AVX2/FMA/F16C; they are
# called only after run-time detection (kernels/dispatch.c).
$(BUILD)/src/kernels/x86/%.o: src/kernels/x86/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -mavx2 -mfma -mf16c -MMD -MP -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/liblowbit.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Itests/unit -o $@ $< $(BUILD)/liblowbit.a $(LDLIBS)

test: $(TEST_BIN) $(BUILD)/lowbit
	tests/run_unit.sh $(BUILD)/tests

asan:
	$(MAKE) test BUILD=build/asan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined"

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# ---------------------------------------------------------------- wasm
# The core and every unit test built with emscripten and run under node.
# Threads: built with -pthread and -sPROXY_TO_PTHREAD, so main() runs on a worker
# and may block while the thread pool's threads run (node 20 has wasm threads).
# PCRE2 for the tokenizer is Debian's pcre2 source rebuilt with emcc
# (scripts/wasm/build-pcre2.sh); node's global fetch() is shadowed by
# scripts/wasm/node-pre.js because emscripten 3.1.6 would load the .wasm with it.
EMCC        ?= emcc
EMCC_ENV    := NODE_PATH=$${NODE_PATH:-/usr/share/nodejs}
WASM_BUILD  ?= build/wasm
WASM_PCRE2  := $(WASM_BUILD)/pcre2
WASM_CFLAGS := -O2 -msimd128 -pthread -std=c11 $(WARN) $(WASM_EXTRA_CFLAGS)
ifeq ($(WERROR),1)
WASM_CFLAGS += -Werror
endif
WASM_LDFLAGS := -pthread -sPROXY_TO_PTHREAD=1 -sPTHREAD_POOL_SIZE=4 -sNODERAWFS=1 \
                -sALLOW_MEMORY_GROWTH=1 -sMAXIMUM_MEMORY=4GB -sEXIT_RUNTIME=1 \
                -Wno-pthreads-mem-growth --pre-js scripts/wasm/node-pre.js
WASM_SRC     := $(LIB_SRC) $(wildcard src/kernels/wasm/*.c)
WASM_LIB_OBJ := $(WASM_SRC:%.c=$(WASM_BUILD)/%.o)
WASM_TESTS   := $(TEST_SRC:tests/unit/%.c=$(WASM_BUILD)/tests/%.js)
WASM_PCRE2_LIB := $(WASM_PCRE2)/lib/libpcre2-8.a

.PHONY: wasm wasm-lib wasm-test
wasm-lib: $(WASM_BUILD)/liblowbit.a
wasm: wasm-lib $(WASM_TESTS)

$(WASM_PCRE2_LIB):
	$(EMCC_ENV) scripts/wasm/build-pcre2.sh $(WASM_PCRE2)

$(WASM_BUILD)/%.o: %.c | $(WASM_PCRE2_LIB)
	@mkdir -p $(@D)
	$(EMCC_ENV) $(EMCC) $(CPPFLAGS) -I$(WASM_PCRE2)/include $(WASM_CFLAGS) -MMD -MP -c -o $@ $<

$(WASM_BUILD)/liblowbit.a: $(WASM_LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && $(EMCC_ENV) emar rcs $@ $^

$(WASM_BUILD)/tests/%.js: tests/unit/%.c $(WASM_BUILD)/liblowbit.a $(WASM_PCRE2_LIB) scripts/wasm/node-pre.js
	@mkdir -p $(@D)
	$(EMCC_ENV) $(EMCC) $(CPPFLAGS) -I$(WASM_PCRE2)/include $(WASM_CFLAGS) -Itests/unit $(WASM_LDFLAGS) \
	  -o $@ $< $(WASM_BUILD)/liblowbit.a $(WASM_PCRE2_LIB) -lm

wasm-test: wasm
	tests/run_unit.sh $(WASM_BUILD)/tests node

-include $(WASM_LIB_OBJ:.o=.d)

# ---------------------------------------------------------------- bench
# lowbit-bench: llama-bench-style pp/tg throughput through the public API only (bench/README.md).
.PHONY: bench
bench: $(BUILD)/lowbit-bench

$(BUILD)/lowbit-bench: bench/bench.c $(BUILD)/liblowbit.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ bench/bench.c $(BUILD)/liblowbit.a $(LDLIBS)

# compile_commands.json for clangd/clang-tidy: a full build in its own directory under bear,
# so the release objects are not rebuilt; -k so a broken file does not hide the others.
.PHONY: compile_commands.json
compile_commands.json:
	bear --output $@ -- $(MAKE) -k -B BUILD=build/compdb all $(TEST_SRC:tests/unit/%.c=build/compdb/tests/%) build/compdb/lowbit-bench || true

# ---- fuzz: libFuzzer targets under ASan+UBSan, built with clang into build/fuzz.
# Only base/ and format/ are linked in, so the fuzzers need no external
# libraries.  tests/fuzz/run.sh SECONDS builds, seeds and runs them.
FUZZ_CC     ?= clang
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -g -O1 -pthread $(WARN) $(FUZZ_SAN)
FUZZ_SRC    := $(wildcard src/base/*.c) $(wildcard src/format/*.c)
FUZZ_OBJ    := $(FUZZ_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_BINS   += build/fuzz/fuzz_gguf build/fuzz/gguf_seeds

fuzz: $(FUZZ_BINS)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

build/fuzz/fuzz_gguf: tests/fuzz/fuzz_gguf.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^

# The seed writer is an ordinary program: it must not pull in libFuzzer's main.
build/fuzz/gguf_seeds: tests/fuzz/gguf_seeds.c $(FUZZ_SRC)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) -std=c11 -O1 -g -pthread $(WARN) -o $@ $^

-include $(FUZZ_OBJ:.o=.d)

# ---- bench tooling for realistic sizes (bench/README.md "Realistic sizes").
# lowbit-genmodel writes a synthetic TinyLlama-1.1B-shaped GGUF; lowbit-bandwidth probes read bandwidth for the
# decode roofline (bench/roofline.sh).  The probe needs no library: its AVX2 loop is chosen at run time.
.PHONY: bench-tools
bench-tools: $(BUILD)/lowbit-genmodel $(BUILD)/lowbit-bandwidth

$(BUILD)/lowbit-genmodel: bench/gen_model.c $(BUILD)/liblowbit.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ bench/gen_model.c $(BUILD)/liblowbit.a $(LDLIBS)

$(BUILD)/lowbit-bandwidth: bench/bandwidth.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ bench/bandwidth.c $(LDLIBS)

# ---- server: `lowbit serve` (src/server) is part of the CLI binary only, so Debian's civetweb and
# jansson are linked into build/*/lowbit and nothing else (the library and the unit tests stay free of them).
SERVER_SRC := $(wildcard src/server/*.c)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ    += $(SERVER_OBJ)
$(BUILD)/lowbit: $(SERVER_OBJ)
$(BUILD)/lowbit: LDLIBS += -lcivetweb -ljansson
-include $(SERVER_OBJ:.o=.d)
