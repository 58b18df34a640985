# vkc -- build, test, run.
#
#   make             every binary into build/bin/
#   make test        unit + integration + cross-language tests
#   make test-asan   the same tests built with AddressSanitizer + UBSan
#   make run         a working demo node (see README.md)
#
# BUILD selects the output tree, SAN=1 adds the sanitizers.

BUILD   ?= build
SAN     ?= 0
CC      ?= cc

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror \
               -Wshadow -Wstrict-prototypes -pthread \
               -I$(BUILD)/gen -Isdk-c $(shell pkg-config --cflags yajl)
ifeq ($(SAN),1)
CFLAGS_BASE += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS     += -fsanitize=address,undefined
endif
CFLAGS  := $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDLIBS  := -lgrpc -lgpr -lprotobuf-c -lyajl -lev -lm -pthread
CHECK_LIBS := $(shell pkg-config --libs check)

BIN  := $(BUILD)/bin
OBJ  := $(BUILD)/obj
GEN  := $(BUILD)/gen
TBIN := $(BUILD)/tests

# ---- generated protobuf-c code ---------------------------------------------

PROTOS     := proto/provider.proto tests/unit/echo.proto
GEN_C      := $(GEN)/provider.pb-c.c
GEN_H      := $(GEN)/provider.pb-c.h $(GEN)/echo.pb-c.h

$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=proto --c_out=$(GEN) $<

$(GEN)/echo.pb-c.c $(GEN)/echo.pb-c.h: tests/unit/echo.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=tests/unit --c_out=$(GEN) $<

# ---- objects -----------------------------------------------------------------

$(OBJ)/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(OBJ)/gen/%.o: $(GEN)/%.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-unused-parameter -c -o $@ $<

SDK_SRC  := $(wildcard sdk-c/*.c)
SDK_OBJ  := $(SDK_SRC:%.c=$(OBJ)/%.o) $(OBJ)/gen/provider.pb-c.o
SDK_LIB  := $(BUILD)/lib/libvkc-sdk.a

CORE_SRC := $(filter-out core/main.c,$(wildcard core/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(OBJ)/%.o)

MOCK_SRC := $(wildcard provider-shims/mock/*.c)
MOCK_OBJ := $(MOCK_SRC:%.c=$(OBJ)/%.o)

$(SDK_LIB): $(SDK_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/vkc-core: $(OBJ)/core/main.o $(CORE_OBJ) $(SDK_LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/vkc-provider-mock: $(MOCK_OBJ) $(SDK_LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

BINARIES := $(BIN)/vkc-core $(BIN)/vkc-provider-mock

# ---- tests -------------------------------------------------------------------

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRC:tests/unit/%.c=$(TBIN)/%)
TEST_LINK  := $(CORE_OBJ) $(OBJ)/gen/echo.pb-c.o $(SDK_LIB)

$(TBIN)/%: $(OBJ)/tests/unit/%.o $(TEST_LINK)
	@mkdir -p $(TBIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

INTEG_SRC  := $(wildcard tests/integration/*.c)
INTEG_BINS := $(INTEG_SRC:tests/integration/%.c=$(TBIN)/%)

$(TBIN)/%: $(OBJ)/tests/integration/%.o $(TEST_LINK)
	@mkdir -p $(TBIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

.PHONY: all test test-unit test-integration test-python test-asan run clean
.SECONDARY:

all: $(BINARIES)

test: all $(UNIT_BINS) $(INTEG_BINS)
	@tests/run-tests.sh $(BUILD)

test-unit: all $(UNIT_BINS)
	@tests/run-tests.sh $(BUILD) unit

test-asan:
	$(MAKE) BUILD=build/asan SAN=1 test

run: all
	@contrib/run-demo.sh $(BUILD)

clean:
	rm -rf build

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
