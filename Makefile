# qkv -- attention from first principles.
#
#   make              build/libqkv.a (the library), build/libqkv_app.a (views, server) and
#                     build/qkv (optimised, -Werror)
#   make test         every test: optimised build, then again under ASan+UBSan (build-asan/)
#   make bench        benchmarks against peers (table + JSON)
#   make serve        build and start the playground on the built-in model
#   make asan         the sanitizer build only
#   make clean
#
# Kernels for one instruction set live in files named *_avx512.c / *_avx2.c and get that
# ISA's flags; everything else is built for baseline x86-64 so one binary runs anywhere and
# picks its SIMD path at run time.

CC      ?= cc
BUILD   ?= build
SAN     ?= 0
PKGS    := libmicrohttpd jansson libutf8proc openblas

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wvla
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -I$(BUILD)/gen $(WARN) -fopenmp \
                 -g $(PKG_CFLAGS)
SANITIZE := -fsanitize=address,undefined
ifeq ($(SAN),1)
  OPT := -O1 -fno-omit-frame-pointer $(SANITIZE) -fno-sanitize-recover=all
  LDFLAGS += $(SANITIZE)
else
  OPT := -O3 -fno-math-errno -fno-trapping-math
endif
CFLAGS  ?=
CFLAGS  += $(CFLAGS_COMMON) $(OPT)
LDLIBS  := $(PKG_LIBS) -lm -lpthread
LDFLAGS += -fopenmp

AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni -mavx2 -mfma -mf16c
AVX2_FLAGS   := -mavx2 -mfma -mf16c

# The library (libqkv.a): engine, model, tokenizer, training, and what they share. The
# application (libqkv_app.a: views, server, the page's files; then the CLI and the benches)
# is built on top of it and the library never calls into it.
LIB_SRC  := $(sort $(wildcard src/common/*.c src/engine/*.c src/model/*.c src/tokenizer/*.c \
                              src/train/*.c))
APP_SRC  := $(sort $(wildcard src/viz/*.c src/server/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c bench/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
WEB_FILES := $(sort $(wildcard web/*))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
APP_OBJ  := $(APP_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/web_assets.o
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

# `make V=1` prints full command lines.
ifeq ($(V),1)
  Q :=
  say = @true
else
  Q := @
  say = @printf '  %-6s %s\n' $(1) $(2)
endif

LIB := $(BUILD)/libqkv.a
APP := $(BUILD)/libqkv_app.a
BIN := $(BUILD)/qkv

.PHONY: all test test-release test-asan asan bench serve clean tests
all: $(LIB) $(APP) $(BIN) $(TESTS)

$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(call say,CC512,$<)
	$(Q)$(CC) $(CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(call say,CC256,$<)
	$(Q)$(CC) $(CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The playground's files are compiled into the binary (tools/embed.c writes a C array).
$(BUILD)/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -Wall -Wextra -Werror $< -o $@

$(BUILD)/gen/web_assets.c: $(BUILD)/embed $(WEB_FILES)
	@mkdir -p $(dir $@)
	$(BUILD)/embed $@ $(WEB_FILES)

$(BUILD)/obj/gen/web_assets.o: $(BUILD)/gen/web_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

$(APP): $(APP_OBJ)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(APP) $(LIB)
	$(call say,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $(CLI_OBJ) $(APP) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/test.h $(APP) $(LIB)
	@mkdir -p $(dir $@)
	$(call say,TEST,$@)
	$(Q)$(CC) $(CFLAGS) -Itests $< $(APP) $(LIB) $(LDFLAGS) $(LDLIBS) -o $@

# The pool again under ThreadSanitizer: a program of its own (TSan and ASan do not mix, and
# libgomp is not instrumented), holding only the pool and what it calls.
POOL_TSAN_SRC := tests/test_pool.c src/common/pool.c src/common/util.c src/common/status.c src/common/buf.c
ifneq ($(SAN),1)
TESTS += $(BUILD)/tests/test_pool_tsan
endif
$(BUILD)/tests/test_pool_tsan: $(POOL_TSAN_SRC) tests/test.h src/qkv_internal.h
	@mkdir -p $(dir $@)
	$(call say,TSAN,$@)
	$(Q)$(CC) -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -Itests $(WARN) -Wno-unknown-pragmas -O1 -g \
	    -fsanitize=thread $(POOL_TSAN_SRC) -lpthread -lm -o $@

tests: $(TESTS) $(BIN)

# The README's test command. Optimised build first, then the sanitizer build.
test:
	bash tools/setup.sh --test
	@rc=0; $(MAKE) test-release || rc=1; $(MAKE) test-asan || rc=1; \
	 cat build/test-totals build-asan/test-totals 2>/dev/null | \
	 awk '{p+=$$1; f+=$$2; s+=$$3} END {printf "both builds (optimised, ASan+UBSan):\n"; printf "total: %d passed, %d failed, %d skipped\n", p, f, s}'; \
	 exit $$rc

test-release:
	$(MAKE) BUILD=build SAN=0 tests
	bash tests/run.sh build

test-asan:
	$(MAKE) BUILD=build-asan SAN=1 tests
	bash tests/run.sh build-asan --sanitize

asan:
	$(MAKE) BUILD=build-asan SAN=1 all

bench:
	bash tools/setup.sh --bench
	$(MAKE) $(BIN)
	$(BIN) bench

# The README's first command: install what is missing, build, start the playground.
serve:
	bash tools/setup.sh --build
	$(MAKE) $(BIN)
	$(BIN) serve $(SERVE_ARGS)

# Ten minutes of mixed load on the server, RSS sampled and printed as a table (not in CI).
soak: $(BIN)
	/usr/bin/python3 tools/soak.py --bin $(BIN) $(SOAK_ARGS)

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# Fuzzing (tests/fuzz/Makefile: clang + libFuzzer, ASan+UBSan, into build-fuzz/).
# `make fuzz` builds the targets; `make fuzz-run FUZZ_SECONDS=60` runs each for that long.
.PHONY: fuzz fuzz-run
fuzz:
	$(MAKE) -f tests/fuzz/Makefile
fuzz-run:
	$(MAKE) -f tests/fuzz/Makefile run
