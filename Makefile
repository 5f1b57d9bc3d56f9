# Shortcuts for the commands the README documents. Benchmarks write benchmarks/results/*.json.
PY := .venv/bin/python
# dvc runs each stage's `gantrack` command, which is on PATH only with .venv/bin on it.
DVC := PATH="$(CURDIR)/.venv/bin:$$PATH" .venv/bin/dvc
RESULTS := benchmarks/results

.PHONY: setup test repro reference bench bench-speed bench-quality bench-memory bench-fid \
        bench-tune-memory bench-profile bench-ema bench-ema-warmup bench-step bench-rejection bench-start

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

repro: setup
	$(DVC) repro

# The quality and memory benchmarks score with the pipeline's classifier and reference stats.
reference: setup
	$(DVC) repro reference

bench: bench-speed bench-profile bench-step bench-quality bench-memory bench-fid bench-tune-memory \
	bench-ema bench-ema-warmup bench-rejection bench-start

bench-speed: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_speed.py --mixed --json $(RESULTS)/speed.json

# 200 s: the default train stage's time on an Intel Xeon with AMX bf16 (the README's side-by-side
# ran 100 s each on an AMD EPYC, where the stage is ~150 s); the baseline is the first
# class-conditional default (constant rates, EMA, no conditional BatchNorm, no augmentation, 5
# epochs, 4x4 kernels, LeakyReLU, beta_1 0.5). Each candidate's FID after every turn is its curve.
FIRST_DEFAULT = model.generator.conditional_bn=false train.lr_g=0.00054 train.lr_d=0.00031 \
	model.kernel_size=4 model.generator.activation=leaky_relu train.beta1_g=0.5 train.beta1_d=0.5 \
	train.beta2_g=0.999 train.beta2_d=0.999 train.lr_decay=constant train.ema_decay=0.999 \
	train.epochs=5 train.augment=[] train.loss=non_saturating
bench-quality: reference
	mkdir -p $(RESULTS) docs/quality/default && $(PY) benchmarks/bench_quality.py --seconds 200 \
	  --chunk 50 --baseline first_default --grids docs/quality/default \
	  --json $(RESULTS)/quality_default.json --variant first_default $(FIRST_DEFAULT)

# A command's start (the lean Keras import against Keras' full one) and a model load's checks.
bench-start: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_start.py --json $(RESULTS)/start.json

bench-profile: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/profile_step.py --json $(RESULTS)/profile.json

# The default step against XLA and 4 steps per call, side by side (DiffAugment off: see the script).
bench-step: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_step.py --xla \
	  --variant steps_per_execution_4 train.steps_per_execution=4 --json $(RESULTS)/step.json

bench-memory: reference
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_memory.py --json $(RESULTS)/memory.json

bench-fid: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_fid.py --dim 2048 | tee $(RESULTS)/fid.txt

bench-tune-memory: setup
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_tune_memory.py --trials 10 \
	  | tee $(RESULTS)/tune_memory.txt

# The long preset's training (~27 min on 2 cores) once, with EMA copies at more decays beside it.
LONG_PRESET = train.epochs=66 train.r1_gamma=0.1 train.batch_size=128 \
	train.lr_g=0.0014 train.lr_d=0.00085 model.generator.activation=leaky_relu \
	train.beta1_g=0.5 train.beta1_d=0.5
bench-ema: reference
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_ema.py --decays 0.9995 0.9999 \
	  --json $(RESULTS)/ema.json $(LONG_PRESET) train.ema_decay=0.999
# The same with the preset's EMA 0.9999: copies at other warm-ups, all with standing statistics.
bench-ema-warmup: reference
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_ema.py --decays 0.9999:5 0.9999:7 0.9999:15 \
	  --standing 100 --json $(RESULTS)/ema_warmup.json $(LONG_PRESET) train.ema_decay=0.9999

# The default trained once per seed, its samples filtered by its own discriminator four ways.
bench-rejection: reference
	mkdir -p $(RESULTS) && $(PY) benchmarks/bench_rejection.py --seeds 42 3 \
	  --json $(RESULTS)/rejection.json
