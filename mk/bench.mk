# `make bench`: sipxcc against sippy 2.5.0's b2bua_simple, stepped rates, one table with
# ratios, written to bench/results/ (about 5 minutes; see bench/README.md).
# `make bench-smoke`: the same harness for a few seconds at a low rate, no verdicts (the
# pytest run of `make test` runs it too, from tests/integration/test_bench_smoke.py).
# sippy, py-spy and pyinstrument go into their own venv under build/bench, never .venv.

BENCH_VENV := build/bench/venv
BENCH_STAMP := $(BENCH_VENV)/.bench-installed
BENCH_ARGS ?=
BENCH_GET_ARGS ?=

.PHONY: bench bench-smoke bench-profile

$(BENCH_STAMP):
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q sippy==2.5.0 py-spy pyinstrument
	touch $@

bench: deps venv $(BENCH_STAMP)
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

bench-smoke: venv
	$(VENV)/bin/python -m bench.run --smoke --no-sippy

# py-spy profile of the daemon at saturation: BENCH_RATE=400 make bench-profile
bench-profile: venv $(BENCH_STAMP)
	$(VENV)/bin/python -m bench.run --profile $(or $(BENCH_RATE),400) $(BENCH_ARGS)

.PHONY: bench-retention bench-get soak fuzz

# memory per retained call and GET latency with 100,000 retained calls (in-process)
bench-retention: venv
	$(VENV)/bin/python -m bench.retention

# GET status of one call over real HTTPS with 100,000 finished calls retained: fills a
# fresh daemon with wrk + post.lua, then paced GETs with wrk + get.lua (about 6 minutes;
# BENCH_GET_ARGS="--calls 3000 --fill-rate 300 --settle 5 --no-save" for a short check)
bench-get: deps venv
	$(VENV)/bin/python -m bench.get_status $(BENCH_GET_ARGS)

# the bounded soak: SOAK_ARGS="--minutes 10 --rate 2" (see bench/soak.py)
soak: deps venv
	$(VENV)/bin/python bench/soak.py $(SOAK_ARGS)

# five minutes of coverage-guided fuzzing of the SIP codec (see bench/FUZZING.md)
fuzz: venv
	test -x build/fuzz/venv/bin/python || $(VENV)/bin/python -m venv build/fuzz/venv
	build/fuzz/venv/bin/python -m pip install -q atheris
	mkdir -p build/fuzz/corpus
	build/fuzz/venv/bin/python bench/fuzz_codec.py -max_total_time=300 \
	  -artifact_prefix=build/fuzz/crash- build/fuzz/corpus

.PHONY: bench-wakeup

# the CPU floor of one reactor wake-up (bare epoll loop vs Twisted), see bench/wakeup_floor.py
bench-wakeup: venv
	$(VENV)/bin/python -m bench.wakeup_floor $(BENCH_WAKEUP_ARGS)
