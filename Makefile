# Shortcuts for the commands the README documents. Benchmarks write benchmarks/results/*.json.
PY := .venv/bin/python
RESULTS := benchmarks/results

.PHONY: setup test repro reference bench bench-speed bench-quality bench-memory bench-fid \
        bench-tune-memory bench-profile

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

repro: setup
	.venv/bin/dvc repro

# The quality and memory benchmarks score with the pipeline's classifier and reference stats.
reference: setup
	.venv/bin/dvc repro reference

bench: bench-speed bench-profile bench-quality bench-memory bench-fid bench-tune-memory

bench-speed: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_speed.py --mixed --json $(RESULTS)/speed.json

# 90 s: the default train stage's time on the machine of the README's figures; the old default
# is the recipe before this one (unconditional, no BatchNorm in D, dropout 0.3, batch 128, no
# EMA, float32).
OLD_DEFAULT = model.conditional=false model.discriminator.dropout=0.3 \
	model.discriminator.batch_norm=false train.batch_size=128 train.ema_decay=null \
	train.mixed_precision=false
bench-quality: reference
	mkdir -p $(RESULTS) docs/quality && $(PY) benchmarks/bench_quality.py --seconds 90 \
	  --baseline old_default --grids docs/quality --json $(RESULTS)/quality.json \
	  --variant old_default $(OLD_DEFAULT) --variant unconditional model.conditional=false \
	  --variant float32 train.mixed_precision=false

bench-profile: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/profile_step.py --json $(RESULTS)/profile.json

bench-memory: reference
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_memory.py --json $(RESULTS)/memory.json

bench-fid: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_fid.py --dim 2048 | tee $(RESULTS)/fid.txt

bench-tune-memory: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_tune_memory.py --trials 10 \
	  | tee $(RESULTS)/tune_memory.txt
