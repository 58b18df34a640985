# vkc -- build, test, run.
#
#   make             every binary into build/bin/
#   make test        unit + integration + cross-language tests
#   make test-asan   the same tests built with AddressSanitizer + UBSan
#   make run         a working demo node (see README.md)
#
# BUILD selects the output tree, SAN=1 adds the sanitizers.

BUILD   ?= build

# The first rule below is a generated file's; plain `make` builds everything.
.DEFAULT_GOAL := all
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
LDLIBS  := -lgrpc -lgpr -lprotobuf-c -lyajl -lyaml -lev -lcurl -lwslay -lz -lhttp_parser -lssl -lcrypto -lm -pthread
CHECK_LIBS := $(shell pkg-config --libs check)

BIN  := $(BUILD)/bin
OBJ  := $(BUILD)/obj
GEN  := $(BUILD)/gen
TBIN := $(BUILD)/tests

# ---- generated protobuf-c code ---------------------------------------------

PROTOS     := proto/provider.proto tests/unit/echo.proto
GEN_C      := $(GEN)/provider.pb-c.c
GEN_H      := $(GEN)/provider.pb-c.h $(GEN)/echo.pb-c.h $(GEN)/cri.pb-c.h

$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=proto --c_out=$(GEN) $<

$(GEN)/echo.pb-c.c $(GEN)/echo.pb-c.h: tests/unit/echo.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=tests/unit --c_out=$(GEN) $<

$(GEN)/cri.pb-c.c $(GEN)/cri.pb-c.h: cri-provider/cri.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=cri-provider --c_out=$(GEN) $<

# ---- objects -----------------------------------------------------------------

$(OBJ)/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(OBJ)/gen/%.o: $(GEN)/%.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-unused-parameter -Wno-missing-braces -c -o $@ $<

SDK_SRC  := $(wildcard sdk-c/*.c)
SDK_OBJ  := $(SDK_SRC:%.c=$(OBJ)/%.o) $(OBJ)/gen/provider.pb-c.o
SDK_LIB  := $(BUILD)/lib/libvkc-sdk.a

CORE_SRC := $(filter-out core/main.c,$(wildcard core/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(OBJ)/%.o)

MOCK_SRC := $(wildcard provider-shims/mock/*.c)
MOCK_OBJ := $(MOCK_SRC:%.c=$(OBJ)/%.o)

CRI_SRC  := $(wildcard cri-provider/*.c)
CRI_OBJ  := $(CRI_SRC:%.c=$(OBJ)/%.o) $(OBJ)/gen/cri.pb-c.o

$(SDK_LIB): $(SDK_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/vkc-core: $(OBJ)/core/main.o $(CORE_OBJ) $(SDK_LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/vkc-provider-mock: $(MOCK_OBJ) $(SDK_LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/vkc-provider-example: $(OBJ)/provider-shims/example/hello.o $(SDK_LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/vkc-provider-cri: $(CRI_OBJ) $(SDK_LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

INTERLINK_SRC := $(wildcard provider-shims/interlink/*.c)
INTERLINK_OBJ := $(INTERLINK_SRC:%.c=$(OBJ)/%.o)

$(BIN)/vkc-provider-interlink: $(INTERLINK_OBJ) $(SDK_LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The provider conformance suite plays the core: it links the core's
# provider client and process spawning, not the core itself.
CONF_SRC := $(wildcard tests/conformance/*.c)
CONF_OBJ := $(CONF_SRC:%.c=$(OBJ)/%.o) \
            $(addprefix $(OBJ)/core/,provider_client.o metrics.o command.o spawn.o logval.o)

$(BIN)/vkc-conformance: $(CONF_OBJ) $(SDK_LIB)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

BINARIES := $(BIN)/vkc-core $(BIN)/vkc-provider-mock $(BIN)/vkc-provider-example $(BIN)/vkc-provider-cri \
            $(BIN)/vkc-provider-interlink \
            $(BIN)/vkc-conformance

# ---- tests -------------------------------------------------------------------

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRC:tests/unit/%.c=$(TBIN)/%)
TEST_LINK  := $(CORE_OBJ) $(OBJ)/gen/echo.pb-c.o $(OBJ)/gen/cri.pb-c.o $(SDK_LIB)

$(TBIN)/%: $(OBJ)/tests/unit/%.o $(TEST_LINK)
	@mkdir -p $(TBIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

# test_podstatus compiles core/podstatus.c in, its API client calls renamed
# to a fake: it links everything else.
$(TBIN)/test_podstatus: $(OBJ)/tests/unit/test_podstatus.o $(filter-out $(OBJ)/core/podstatus.o,$(TEST_LINK))
	@mkdir -p $(TBIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

# Unit tests of vkc-provider-cri's pure parts link those parts too.
CRI_UNIT_OBJ := $(addprefix $(OBJ)/cri-provider/,atomic_writer.o payload.o pullcreds.o)

$(OBJ)/tests/unit/test_cri_%.o: CFLAGS += -Icri-provider

$(TBIN)/test_cri_%: $(OBJ)/tests/unit/test_cri_%.o $(CRI_UNIT_OBJ) $(TEST_LINK)
	@mkdir -p $(TBIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

# harness.c is not a test: every integration test links it.
INTEG_SRC  := $(filter-out tests/integration/harness.c,$(wildcard tests/integration/*.c))
INTEG_BINS := $(INTEG_SRC:tests/integration/%.c=$(TBIN)/integration/%)

$(TBIN)/integration/%: $(OBJ)/tests/integration/%.o $(OBJ)/tests/integration/harness.o $(TEST_LINK)
	@mkdir -p $(TBIN)/integration
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

# ---- fuzzing (tests/fuzz/README.md) -------------------------------------------
#
#   make fuzz          build every libFuzzer target, run each for FUZZ_SECONDS
#   make fuzz-build    build them only; make test replays their corpora
#
# libFuzzer needs clang: the code under test is compiled again, with clang
# and the fuzzer's instrumentation, into $(FUZZ)/obj. Each target links
# tests/fuzz/fuzz_NAME.c, the sources FUZZ_SRC_NAME lists, and FUZZ_COMMON.

FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 30
FUZZ         := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined
FUZZ_CFLAGS  := $(filter-out -O% -fsanitize=% -fno-sanitize-recover=%,$(CFLAGS_BASE)) -O1 \
                -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=undefined -Icore -Itests/fuzz

FUZZ_COMMON              := sdk-c/buf.c sdk-c/json.c sdk-c/quantity.c sdk-c/base64.c \
                            tests/fuzz/fuzz_log.c \
                            $(GEN)/provider.pb-c.c
FUZZ_SRC_json            :=
FUZZ_SRC_pod             := sdk-c/pod.c sdk-c/pod_status.c
FUZZ_SRC_quantity        :=
FUZZ_SRC_command         := core/command.c
FUZZ_SRC_duration        := core/flags.c core/command.c
FUZZ_SRC_kubeconfig      := core/kubeconfig.c core/logval.c
FUZZ_SRC_envresolve      := core/envresolve.c
FUZZ_SRC_watch           := core/kube_watch.c core/ratelimit.c
FUZZ_SRC_reflector       := core/kube_reflector.c core/kube_watch.c core/ratelimit.c
FUZZ_SRC_protobuf        :=
FUZZ_SRC_provider_rpc    := core/provider_client.c core/callback_server.c core/refs.c core/intern.c \
                            core/metrics.c core/socket_dir.c core/logval.c
FUZZ_SRC_spdy            := sdk-c/spdy.c tests/fuzz/spdy_client.c
FUZZ_SRC_websocket       := core/websocket.c tests/fuzz/ws_client.c
FUZZ_SRC_remotecommand   := core/remotecommand.c sdk-c/spdy.c core/websocket.c \
                            tests/fuzz/spdy_client.c tests/fuzz/ws_client.c
FUZZ_SRC_portforward     := core/portforward.c sdk-c/spdy.c core/websocket.c \
                            tests/fuzz/spdy_client.c tests/fuzz/ws_client.c
FUZZ_SRC_http            := core/http_server.c core/logval.c
FUZZ_SRC_node            := core/node.c core/metrics.c core/ratelimit.c core/logval.c
FUZZ_SRC_podstatus       := core/podstatus.c core/packed.c core/intern.c core/podkey.c core/metrics.c core/ratelimit.c core/logval.c \
                            sdk-c/pod_status.c

FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(filter-out tests/fuzz/fuzz_log.c,\
                $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_BINS  := $(FUZZ_NAMES:%=$(FUZZ)/fuzz_%)
fuzz_obj    = $(patsubst %.c,$(FUZZ)/obj/%.o,$(subst $(GEN)/,gen/,$(1)))

$(FUZZ)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

$(FUZZ)/obj/gen/%.o: $(GEN)/%.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

.SECONDEXPANSION:
$(FUZZ)/fuzz_%: $$(call fuzz_obj,tests/fuzz/fuzz_$$*.c $$(FUZZ_SRC_$$*) $(FUZZ_COMMON))
	$(FUZZ_CC) $(FUZZ_SAN) -o $@ $^ $(LDLIBS)

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@tests/fuzz/run.sh fuzz $(BUILD) $(FUZZ_SECONDS)

# The replay of every corpus and regression (seconds) is part of the tests.
test test-unit: $(FUZZ_BINS)

-include $(shell find $(FUZZ)/obj -name '*.d' 2>/dev/null)

# ---- benchmarks (docs/performance.md) ------------------------------------------
#
#   make bench         every benchmark against a control plane of its own;
#                      figures, CSV and plots under $(BUILD)/bench
#   make bench-build   the harness only
#   make bench-micro   instructions per pod of the core's hot paths (callgrind)
#   make bench-profile vkc-core profiled through a churn (PROFILE=perf|callgrind)
#
# Not part of make test: they take minutes and load the machine. Knobs:
# BENCH_PODS (churn scale, 10000), BENCH_ONLY="churn memory ..." (a subset),
# BENCH_IDLE_S (heartbeat window, 60). The harness links the core's own API
# client, nothing from the core's Kubernetes side.

BENCH_BIN  := $(BUILD)/bench/vkc-bench
BENCH_SRC  := $(filter-out tests/bench/streams.c,$(wildcard tests/bench/*.c))
BENCH_OBJ  := $(BENCH_SRC:%.c=$(OBJ)/%.o) \
              $(addprefix $(OBJ)/core/,kube_client.o kube_reflector.o kube_watch.o kubeconfig.o ratelimit.o \
                logval.o metrics.o)

$(BENCH_BIN): $(BENCH_OBJ) $(SDK_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Exec and log streams through the API server vs the provider directly: a
# separate, blocking program on the core's provider client (streams.c).
STREAMS_BIN := $(BUILD)/bench/vkc-bench-streams
STREAMS_OBJ := $(OBJ)/tests/bench/streams.o $(addprefix $(OBJ)/core/,provider_client.o metrics.o logval.o)

$(STREAMS_BIN): $(STREAMS_OBJ) $(SDK_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Per-pod instruction counts of the core's hot paths (tests/bench/micro).
MICRO_BIN  := $(BUILD)/bench/vkc-micro
MICRO_OBJ  := $(OBJ)/tests/bench/micro/micro.o \
              $(addprefix $(OBJ)/core/,podstatus.o packed.o intern.o podkey.o envresolve.o metrics.o logval.o kube_client.o kubeconfig.o ratelimit.o)

$(MICRO_BIN): $(MICRO_OBJ) $(SDK_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.PHONY: bench bench-build bench-micro bench-profile
bench-build: $(BENCH_BIN) $(STREAMS_BIN) $(MICRO_BIN)

bench-micro: $(MICRO_BIN)
	@tests/bench/micro/run.sh $(BUILD)

# vkc-core under callgrind (PROFILE=perf: perf record) through a churn.
bench-profile: $(BIN)/vkc-core $(BIN)/vkc-provider-mock $(BENCH_BIN)
	@tests/bench/profile.sh $(BUILD) $(or $(PROFILE),callgrind)

bench: $(BIN)/vkc-core $(BIN)/vkc-provider-mock $(BENCH_BIN) $(STREAMS_BIN)
	@tests/bench/run.sh $(BUILD)

.PHONY: all test test-unit test-integration test-python test-asan run clean
.SECONDARY:

all: $(BINARIES)

# The whole suite, then the unit tests again under ASan + UBSan: every
# bad-input path they drive must be clean of memory errors and leaks.
test: all $(UNIT_BINS) $(INTEG_BINS) $(BENCH_BIN) $(STREAMS_BIN) fuzz-build
	@tests/run-tests.sh $(BUILD)
ifeq ($(SAN),0)
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 test-unit
endif

test-unit: all $(UNIT_BINS)
	@tests/run-tests.sh $(BUILD) unit

test-asan:
	$(MAKE) BUILD=build/asan SAN=1 test

run: all
	@contrib/run-demo.sh $(BUILD)

clean:
	rm -rf build

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
