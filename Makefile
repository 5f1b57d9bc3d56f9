# Shortcuts for the commands the README documents. Benchmarks write benchmarks/results/*.json.
PY := .venv/bin/python
RESULTS := benchmarks/results

.PHONY: setup test repro reference bench bench-speed bench-quality bench-memory bench-fid \
        bench-tune-memory

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

repro: setup
	.venv/bin/dvc repro

# The quality and memory benchmarks score with the pipeline's classifier and reference stats.
reference: setup
	.venv/bin/dvc repro reference

bench: bench-speed bench-quality bench-memory bench-fid bench-tune-memory

bench-speed: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_speed.py --json $(RESULTS)/speed.json

bench-quality: reference
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_quality.py --json $(RESULTS)/quality.json

bench-memory: reference
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_memory.py --json $(RESULTS)/memory.json

bench-fid: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_fid.py --dim 2048 | tee $(RESULTS)/fid.txt

bench-tune-memory: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_tune_memory.py --trials 10 \
	  | tee $(RESULTS)/tune_memory.txt
