# Thin wrapper over CMake. `make` builds build/weft; `make test` runs the suite.
JOBS ?= $(shell nproc)
BUILD ?= build
CMAKE_FLAGS ?=

.PHONY: all test test-load run asan asan-test tsan-test deps clean format bench

all:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

# The multi-process tests (ctest label load) with stress-ng --cpu 2 beside
# them: they must pass on a busy machine (scripts/test-load.sh).
test-load: all
	scripts/test-load.sh $(BUILD)

run: all
	./$(BUILD)/weft train examples/mlp.job

asan:
	$(MAKE) all BUILD=build-asan CMAKE_FLAGS="-DWEFT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)"

asan-test: asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS) -L unit

# Our own threads (the pool) under ThreadSanitizer. OpenBLAS and oneDNN are
# not instrumented, so only the tests that stay out of them run here.
tsan-test:
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DWEFT_NATIVE=OFF -DCMAKE_C_FLAGS="-fsanitize=thread -g" $(CMAKE_FLAGS) >/dev/null
	cmake --build build-tsan -j $(JOBS) --target test_pool test_reducer test_feeder test_cache test_cache_redis test_transform
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -R 'test_pool|test_reducer|test_feeder|test_cache|test_transform'

deps:
	scripts/install-deps.sh

bench: all
	bash bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan

# libFuzzer: every tests/fuzz/fuzz_*.c (except the fuzz_main.c replay driver)
# is a harness. The weft libraries are built with clang into $(FUZZ_BUILD)
# (-fsanitize=fuzzer-no-link plus ASan/UBSan), each harness is linked
# against all of them and runs FUZZ_SECONDS on its seeds
# (tests/fuzz/corpus/<harness>/) plus what earlier runs found
# ($(FUZZ_BUILD)/corpus/<harness>/). A crash fails the target; its input
# is left in $(FUZZ_BUILD)/fuzz/ (replay it with fuzz_main.c).
FUZZ_SECONDS ?= 30
FUZZ_BUILD ?= build-fuzz
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g
FUZZ_HARNESSES = $(filter-out fuzz_main,$(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c))))
FUZZ_LAYERS = cluster exec compile graph data tensor comm core
.PHONY: fuzz
fuzz:
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DWEFT_NATIVE=OFF -DWEFT_WERROR=OFF \
	  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN) -Wno-unknown-warning-option" >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) $(addprefix --target weft_,$(FUZZ_LAYERS))
	@mkdir -p $(FUZZ_BUILD)/fuzz
	@set -e; for h in $(FUZZ_HARNESSES); do \
	  echo "fuzz: $$h for $(FUZZ_SECONDS) s"; \
	  clang -fsanitize=fuzzer $(FUZZ_SAN) -Iinclude tests/fuzz/$$h.c -o $(FUZZ_BUILD)/fuzz/$$h \
	    -Wl,--start-group $(foreach l,$(FUZZ_LAYERS),$(FUZZ_BUILD)/libweft_$(l).a) -Wl,--end-group \
	    $$(pkg-config --libs openblas libcjson zlib libcrypto hiredis) -ldl -lm -lpthread; \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$h; \
	  $(FUZZ_BUILD)/fuzz/$$h -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/fuzz/$$h- $(FUZZ_BUILD)/corpus/$$h $$(ls -d tests/fuzz/corpus/$$h 2>/dev/null) \
	    2>$(FUZZ_BUILD)/fuzz/$$h.log || { tail -60 $(FUZZ_BUILD)/fuzz/$$h.log; echo "fuzz: $$h failed"; exit 1; }; \
	  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' $(FUZZ_BUILD)/fuzz/$$h.log | tr '\n' ' '; echo; \
	done
