# Thin wrapper over CMake. `make` builds build/weft; `make test` runs the suite.
JOBS ?= $(shell nproc)
BUILD ?= build
CMAKE_FLAGS ?=

.PHONY: all test run asan asan-test tsan-test deps clean format bench

all:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

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
	cmake --build build-tsan -j $(JOBS) --target test_pool
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -R test_pool

deps:
	scripts/install-deps.sh

bench: all
	bash bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan
