# lowbit build.  Targets by intent:
#   make            the CLI (build/release/lowbit) and the library
#   make test       build and run the unit tests natively
#   make asan       the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make wasm-test  the core and unit tests built with emscripten, run under node
#   make web        the browser builds for the JS SDK in web/ (docs/web.md)
#   make neon-test  the kernel tests cross-compiled for AArch64 (NEON), run under qemu-user
#   make fuzz       libFuzzer targets (clang)
#   make compile_commands.json   for clangd/clang-tidy (uses bear)

CC      ?= cc
BUILD   ?= build/release
# Loops start on 64-byte boundaries: where the hot loops happened to fall
# moved batched decoding by up to 15% with unrelated changes (docs/server.md).
OPT     ?= -O2 -falign-loops=64
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wcast-qual -Wno-unused-parameter
CPPFLAGS := -Iinclude -Isrc -D_GNU_SOURCE
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 $(WARN) -pthread $(EXTRA_CFLAGS)
LDLIBS  := -lpcre2-8 -lm -lpthread
ifeq ($(WERROR),1)
CFLAGS  += -Werror
endif

LIB_DIRS := base format quant kernels tokenizer model kv generate api tune
LIB_SRC  := $(foreach d,$(LIB_DIRS),$(wildcard src/$(d)/*.c))
X86_SRC  := $(wildcard src/kernels/x86/*.c)
# On an AArch64 host the Arm NEON files take the x86 files' place.
ifneq (,$(filter aarch64%,$(shell $(CC) -dumpmachine 2>/dev/null)))
X86_SRC  :=
ARM_SRC  := $(wildcard src/kernels/arm/*.c)
endif
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/unit/test_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(X86_SRC:%.c=$(BUILD)/%.o) $(ARM_SRC:%.c=$(BUILD)/%.o)
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

# The x86 kernels are the only files compiled for AVX2/FMA/F16C (avx512_*.c
# also for AVX-512 F/BW/VL/VNNI); they are called only after run-time
# detection (kernels/dispatch.c).
$(BUILD)/src/kernels/x86/avx512_%.o: src/kernels/x86/avx512_%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni -MMD -MP -c -o $@ $<

# LBQV's AVX-512 kernels also use VBMI, BITALG and GFNI (registered only where present).
$(BUILD)/src/kernels/x86/avx512_lbqv.o: src/kernels/x86/avx512_lbqv.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512vbmi -mavx512bitalg -mgfni -MMD -MP -c -o $@ $<

$(BUILD)/src/kernels/x86/%.o: src/kernels/x86/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -mavx2 -mfma -mf16c -MMD -MP -c -o $@ $<

# The *_dotprod.c files are the only ones built for Armv8.2's SDOT; they are
# called only where the CPU reports it (kernels/cpu.c).
$(BUILD)/src/kernels/arm/%_dotprod.o: src/kernels/arm/%_dotprod.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -march=armv8.2-a+dotprod -MMD -MP -c -o $@ $<

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

# Relaxed SIMD (src/kernels/wasm/wasm_relaxed.h): the kernels again with -DLB_WASM_RELAXED, linked with
# placeholder stubs and rewritten by scripts/wasm/relaxed.mjs (binaryen.js from npm); node 20 runs
# them behind a flag.  Only the kernel tests (K-quants, their lane contract, fmath) use them.
WASM_RELAXED_OBJ   := $(patsubst %.c,$(WASM_BUILD)/relaxed/%.o,$(wildcard src/kernels/wasm/*.c))
WASM_RELAXED_BASE  := $(filter-out $(WASM_BUILD)/src/kernels/wasm/%,$(WASM_LIB_OBJ))
WASM_RELAXED_TESTS := $(patsubst %,$(WASM_BUILD)/tests-relaxed/%.js,test_kernels_k test_kdot_lanes test_fmath)
NODE_RELAXED       := node --experimental-wasm-relaxed-simd

$(WASM_BUILD)/relaxed/%.o: %.c | $(WASM_PCRE2_LIB)
	@mkdir -p $(@D)
	$(EMCC_ENV) $(EMCC) $(CPPFLAGS) $(WASM_CFLAGS) -DLB_WASM_RELAXED -MMD -MP -c -o $@ $<

$(WASM_BUILD)/tests-relaxed/%.js: tests/unit/%.c $(WASM_RELAXED_OBJ) $(WASM_RELAXED_BASE) $(WASM_PCRE2_LIB) \
                                  scripts/wasm/node-pre.js scripts/wasm/relaxed-stubs.js scripts/wasm/relaxed.mjs
	@mkdir -p $(@D)
	$(EMCC_ENV) $(EMCC) $(CPPFLAGS) -I$(WASM_PCRE2)/include $(WASM_CFLAGS) -DLB_WASM_RELAXED -Itests/unit $(WASM_LDFLAGS) \
	  --js-library scripts/wasm/relaxed-stubs.js -o $@ $< $(WASM_RELAXED_OBJ) $(WASM_RELAXED_BASE) $(WASM_PCRE2_LIB) -lm
	node scripts/wasm/relaxed.mjs $(@:.js=.wasm) $@

wasm-test: wasm $(WASM_RELAXED_TESTS)
	tests/run_unit.sh $(WASM_BUILD)/tests node
	tests/run_unit.sh $(WASM_BUILD)/tests-relaxed "$(NODE_RELAXED)"

-include $(WASM_RELAXED_OBJ:.o=.d)

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
# Each links only what it parses with (the GGUF one base/ and format/; base/ needs libm), so no
# target needs the engine.  tests/fuzz/run.sh SECONDS builds, seeds and runs them.
FUZZ_CC     ?= clang
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -g -O1 -pthread $(WARN) $(FUZZ_SAN)
FUZZ_SRC    := $(wildcard src/base/*.c) $(wildcard src/format/*.c)
FUZZ_OBJ    := $(FUZZ_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_BINS   += build/fuzz/fuzz_gguf build/fuzz/gguf_seeds

build/fuzz/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

build/fuzz/fuzz_gguf: tests/fuzz/fuzz_gguf.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ -lm

# The tokenizers (techdocs-28M's SentencePiece, techdocs-qwen's byte-level BPE) need Debian's PCRE2.
FUZZ_TOK_OBJ := $(patsubst %.c,build/fuzz/obj/%.o,$(wildcard src/tokenizer/*.c))
FUZZ_BINS    += build/fuzz/fuzz_tokenizer
build/fuzz/fuzz_tokenizer: tests/fuzz/fuzz_tokenizer.c $(FUZZ_TOK_OBJ) $(FUZZ_OBJ)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ -lpcre2-8 -lm

# The server's request parser: only its JSON side (openai.c, chat_template.c) and Debian's jansson.
FUZZ_OAI_OBJ := build/fuzz/obj/src/server/openai.o build/fuzz/obj/src/server/chat_template.o
FUZZ_BINS    += build/fuzz/fuzz_oai
build/fuzz/fuzz_oai: tests/fuzz/fuzz_oai.c $(FUZZ_OAI_OBJ)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ -ljansson

# The Hessian loader (quant/hessian.c) on top of the GGUF reader.
FUZZ_HESS_OBJ := build/fuzz/obj/src/quant/hessian.o build/fuzz/obj/src/quant/calib_table.o
FUZZ_BINS     += build/fuzz/fuzz_hessian
build/fuzz/fuzz_hessian: tests/fuzz/fuzz_hessian.c $(FUZZ_HESS_OBJ) $(FUZZ_OBJ)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ -lm

# The seed writer is an ordinary program: it must not pull in libFuzzer's main.
build/fuzz/gguf_seeds: tests/fuzz/gguf_seeds.c $(FUZZ_SRC)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) -std=c11 -O1 -g -pthread $(WARN) -o $@ $^ -lm

fuzz: $(FUZZ_BINS)

-include $(FUZZ_OBJ:.o=.d) $(FUZZ_TOK_OBJ:.o=.d) $(FUZZ_OAI_OBJ:.o=.d) $(FUZZ_HESS_OBJ:.o=.d)

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

# ---------------------------------------------------------------- web
# `make web`: the browser builds of the core plus the SDK's C glue (web/c), as ES-module
# factories for a Worker: build/web/lowbit-{simd-mt,simd,nosimd}.{mjs,wasm}.  The SDK picks one at
# run time (web/src/capabilities.js): SIMD128 + pthreads when the page is cross-origin isolated,
# SIMD single-thread, then plain wasm.  PCRE2 is built twice (with and without -pthread) because
# objects with atomics cannot be linked into a build without shared memory.
WEB_BUILD   ?= build/web
# lowbit tune (src/tune) trains on a desktop; the page never calls it.
WEB_SRC     := $(filter-out src/tune/%,$(LIB_SRC)) src/server/chat_template.c $(wildcard web/c/*.c)
WEB_FUNCS   := malloc free lbw_last_error lbw_plan lbw_model_load lbw_model_free lbw_model_info \
               lbw_session_new lbw_session_free lbw_chat_prompt lbw_chat_stop lbw_gen_begin lbw_gen_step \
               lbw_gen_token lbw_gen_piece lbw_gen_piece_len lbw_gen_stats lbw_gen_end
WEB_EMPTY   :=
WEB_COMMA   := ,
WEB_EXPORTS := $(subst $(WEB_EMPTY) $(WEB_EMPTY),$(WEB_COMMA),$(strip $(WEB_FUNCS:%=_%)))
WEB_LDFLAGS := -sMODULARIZE=1 -sEXPORT_ES6=1 -sENVIRONMENT=web,worker -sEXPORT_NAME=createLowbit \
               -sALLOW_MEMORY_GROWTH=1 -sMAXIMUM_MEMORY=4GB -sINITIAL_MEMORY=32MB -sTOTAL_STACK=1MB \
               -sEXPORTED_FUNCTIONS=$(WEB_EXPORTS) -sEXPORTED_RUNTIME_METHODS=UTF8ToString,stringToUTF8,lengthBytesUTF8 \
               -sFILESYSTEM=0 -sEXIT_RUNTIME=0
WEB_CFLAGS_simd-mt := -msimd128 -pthread
WEB_CFLAGS_simd    := -msimd128
WEB_CFLAGS_nosimd  :=
# The pthread pool is made when the module starts, one nested Worker per pthread; worker.js asks for exactly the
# lb_pool workers the session will use (threads - 1) through Module.lbPool (4 if it says nothing).  Each nested
# Worker is one more chance for Firefox's start-up stall (docs/web.md), and each holds an instance of the module.
WEB_LDFLAGS_simd-mt := -pthread '-sPTHREAD_POOL_SIZE=Module.lbPool>=0?Module.lbPool:4' -Wno-pthreads-mem-growth
WEB_PCRE2_simd-mt  := $(WEB_BUILD)/pcre2-mt
WEB_PCRE2_simd     := $(WEB_BUILD)/pcre2-st
WEB_PCRE2_nosimd   := $(WEB_BUILD)/pcre2-st
WEB_VARIANTS := simd-mt simd nosimd

.PHONY: web
web: $(foreach v,$(WEB_VARIANTS),$(WEB_BUILD)/lowbit-$(v).mjs)

# PCRE2 from the source tree the wasm section already unpacked when there is one (else the script fetches it).
$(WEB_BUILD)/pcre2-mt/lib/libpcre2-8.a: PCRE2_FLAGS := -O2 -pthread
$(WEB_BUILD)/pcre2-st/lib/libpcre2-8.a: PCRE2_FLAGS := -O2
$(WEB_BUILD)/pcre2-%/lib/libpcre2-8.a:
	@mkdir -p $(WEB_BUILD)/pcre2-$*/src
	if [ -d $(WASM_PCRE2)/src/pcre2 ] && [ ! -d $(WEB_BUILD)/pcre2-$*/src/pcre2 ]; then cp -r $(WASM_PCRE2)/src/pcre2 $(WEB_BUILD)/pcre2-$*/src/; fi
	$(EMCC_ENV) PCRE2_WASM_CFLAGS="$(PCRE2_FLAGS)" scripts/wasm/build-pcre2.sh $(WEB_BUILD)/pcre2-$*

# One object tree and one link per variant; the SIMD128 kernels (src/kernels/wasm) only where SIMD is on.
define WEB_VARIANT
WEB_OBJ_$(1) := $$(patsubst %.c,$(WEB_BUILD)/$(1)/%.o,$$(WEB_SRC) $$(if $$(findstring simd128,$$(WEB_CFLAGS_$(1))),$$(wildcard src/kernels/wasm/*.c)))
$(WEB_BUILD)/$(1)/%.o: %.c | $$(WEB_PCRE2_$(1))/lib/libpcre2-8.a
	@mkdir -p $$(@D)
	$$(EMCC_ENV) $$(EMCC) $$(CPPFLAGS) -I$$(WEB_PCRE2_$(1))/include -O3 -std=c11 $$(WARN) $$(WEB_CFLAGS_$(1)) \
	  $$(if $$(filter 1,$$(WERROR)),-Werror) -MMD -MP -c -o $$@ $$<
$(WEB_BUILD)/lowbit-$(1).mjs: $$(WEB_OBJ_$(1)) $$(WEB_PCRE2_$(1))/lib/libpcre2-8.a
	$$(EMCC_ENV) $$(EMCC) -O3 $$(WEB_CFLAGS_$(1)) $$(WEB_LDFLAGS) $$(WEB_LDFLAGS_$(1)) -o $$@ $$^ -lm
-include $$(WEB_OBJ_$(1):.o=.d)
endef
$(foreach v,$(WEB_VARIANTS),$(eval $(call WEB_VARIANT,$(v))))

# simd-relaxed and simd-mt-relaxed: the base build's objects with the SIMD128 kernels recompiled with
# -DLB_WASM_RELAXED, linked with placeholder stubs and rewritten to relaxed SIMD by scripts/wasm/relaxed.mjs
# (binaryen.js from npm; clang 14 has no builtin for it).  The SDK takes them where relaxed SIMD validates.
define WEB_RELAXED_VARIANT
WEB_OBJ_$(1)-relaxed := $$(filter-out $(WEB_BUILD)/$(1)/src/kernels/wasm/%,$$(WEB_OBJ_$(1))) \
                        $$(patsubst %.c,$(WEB_BUILD)/$(1)-relaxed/%.o,$$(wildcard src/kernels/wasm/*.c))
$(WEB_BUILD)/$(1)-relaxed/%.o: %.c | $$(WEB_PCRE2_$(1))/lib/libpcre2-8.a
	@mkdir -p $$(@D)
	$$(EMCC_ENV) $$(EMCC) $$(CPPFLAGS) -I$$(WEB_PCRE2_$(1))/include -O3 -std=c11 $$(WARN) $$(WEB_CFLAGS_$(1)) -DLB_WASM_RELAXED \
	  $$(if $$(filter 1,$$(WERROR)),-Werror) -MMD -MP -c -o $$@ $$<
$(WEB_BUILD)/lowbit-$(1)-relaxed.mjs: $$(WEB_OBJ_$(1)-relaxed) $$(WEB_PCRE2_$(1))/lib/libpcre2-8.a scripts/wasm/relaxed-stubs.js \
                                      scripts/wasm/relaxed.mjs
	$$(EMCC_ENV) $$(EMCC) -O3 $$(WEB_CFLAGS_$(1)) $$(WEB_LDFLAGS) $$(WEB_LDFLAGS_$(1)) --js-library scripts/wasm/relaxed-stubs.js \
	  -o $$@ $$(WEB_OBJ_$(1)-relaxed) $$(WEB_PCRE2_$(1))/lib/libpcre2-8.a -lm
	node scripts/wasm/relaxed.mjs $$(@:.mjs=.wasm) $$@
-include $$(patsubst %.c,$(WEB_BUILD)/$(1)-relaxed/%.d,$$(wildcard src/kernels/wasm/*.c))
endef
$(foreach v,simd simd-mt,$(eval $(call WEB_RELAXED_VARIANT,$(v))))
web: $(WEB_BUILD)/lowbit-simd-relaxed.mjs $(WEB_BUILD)/lowbit-simd-mt-relaxed.mjs

# ---------------------------------------------------------------- neon
# The Arm NEON kernels (src/kernels/arm) and the kernel tests cross-compiled
# for AArch64 and run under qemu-user.  Only the layers the kernel tests link
# are built (no tokenizer: Debian has no arm64 PCRE2 on an x86 host), and
# only the kernel tests run: the rest of the engine has no Arm-specific code.
# qemu's default CPU has the dot-product extension, so both the "neon" and
# the "neon-dotprod" sets are tested (NEON_RUN="qemu-aarch64 -cpu cortex-a53
# -L ..." tests a CPU without it).
NEON_CC     ?= aarch64-linux-gnu-gcc
NEON_AR     ?= aarch64-linux-gnu-ar
NEON_BUILD  ?= build/neon
NEON_RUN    ?= qemu-aarch64 -L /usr/aarch64-linux-gnu
NEON_CFLAGS := -O2 -g -std=c11 $(WARN) -pthread $(NEON_EXTRA_CFLAGS)
ifeq ($(WERROR),1)
NEON_CFLAGS += -Werror
endif
NEON_SRC    := $(foreach d,base format quant kernels,$(wildcard src/$(d)/*.c)) $(wildcard src/kernels/arm/*.c)
NEON_OBJ    := $(NEON_SRC:%.c=$(NEON_BUILD)/%.o)
NEON_TESTS  := $(patsubst %,$(NEON_BUILD)/tests/%,test_kernels_q32 test_kernels_k test_kernels_float test_kernels_kv \
                 test_fmath test_kdot_lanes test_lbq test_lbqv)

.PHONY: neon neon-test
neon: $(NEON_TESTS)

$(NEON_BUILD)/src/kernels/arm/%_dotprod.o: src/kernels/arm/%_dotprod.c
	@mkdir -p $(@D)
	$(NEON_CC) $(CPPFLAGS) $(NEON_CFLAGS) -march=armv8.2-a+dotprod -MMD -MP -c -o $@ $<

$(NEON_BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(NEON_CC) $(CPPFLAGS) $(NEON_CFLAGS) -MMD -MP -c -o $@ $<

$(NEON_BUILD)/liblowbit.a: $(NEON_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && $(NEON_AR) rcs $@ $^

$(NEON_BUILD)/tests/%: tests/unit/%.c $(NEON_BUILD)/liblowbit.a
	@mkdir -p $(@D)
	$(NEON_CC) $(CPPFLAGS) $(NEON_CFLAGS) -Itests/unit -o $@ $< $(NEON_BUILD)/liblowbit.a -lm -lpthread

neon-test: neon
	tests/run_unit.sh $(NEON_BUILD)/tests "$(NEON_RUN)"

-include $(NEON_OBJ:.o=.d)
