# Mozart: `make demo` and `make test` set everything up themselves (idempotent, fast when done).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: setup system demo test bench clean default-model

# System packages (FluidSynth and a General MIDI SoundFont), installed only when root and missing.
system:
	@if ! command -v fluidsynth >/dev/null 2>&1 || [ ! -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || [ ! -e /usr/share/sounds/sf2/TimGM6mb.sf2 ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing fluidsynth, fluid-soundfont-gm, timgm6mb-soundfont"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fluidsynth fluid-soundfont-gm timgm6mb-soundfont >/dev/null; \
	  else echo "note: fluidsynth/fluid-soundfont-gm missing and not root; audio rendering will be unavailable"; fi; \
	fi
	@# Debian's headless Chromium and its driver, for the studio's browser test (never a browser download)
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium, chromium-driver"; \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || \
	     (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null) || \
	     echo "note: chromium could not be installed; the studio's browser test will be skipped"); \
	  else echo "note: chromium/chromedriver missing and not root; the studio's browser test will be skipped"; fi; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: this takes the local CPU wheel instead of a multi-GB CUDA build.
$(VENV)/.stamp-torch: | $(PY)
	$(PIP) install torch==2.13.0
	touch $@

$(VENV)/.stamp-project: pyproject.toml $(VENV)/.stamp-torch
	$(PIP) install -e '.[test]'
	touch $@

setup: system $(VENV)/.stamp-project

demo: setup
	$(VENV)/bin/mozart demo -o out/demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/codec.py
	$(PY) bench/dataset.py
	$(PY) bench/render.py
	$(PY) bench/train.py
	$(PY) bench/generate.py

# The built-in model: public-domain corpus -> dataset -> training (~1.1 hours on 2 CPU cores, resumable) -> package
# -> evaluation (test split, per style, out of domain on the dev corpus) -> card.
default-model: setup
	@# a per-piece timeout far above the slowest piece (Beethoven's op. 18 no. 4, about 8 min here), so that no
	@# piece depends on the machine's load (the default 120 s dropped it, and op. 74 on a busy machine)
	$(VENV)/bin/mozart corpus music21 -o build/corpus --subset all --workers 2 --timeout 1800
	$(VENV)/bin/mozart dataset build/corpus -o build/data --max-tokens 512 --transpose -3..3 --workers 2 --min-test-works 5
	$(VENV)/bin/mozart dataset build/corpus -o build/data-orig --max-tokens 512 --workers 2 --min-test-works 5
	$(VENV)/bin/mozart train build/data -o build/default-run --config configs/default-model.toml --resume
	$(PY) -m mozart.modelcard build/default-run build/data src/mozart/default_model
	@# second stage: the keys each style is written in (the same pieces, untransposed; docs/training.md)
	rm -rf build/keys-run
	$(VENV)/bin/mozart finetune src/mozart/default_model build/data-orig -o build/keys-run --lora-r 16 --lora-alpha 32 \
	  --merge --max-steps 240 --batch-size 16 --lr 1e-3 --config configs/default-model.toml
	$(PY) -m mozart.modelcard build/default-run build/data src/mozart/default_model --finetune build/keys-run build/data-orig
	$(VENV)/bin/mozart evaluate build/data -o build/default-report --samples 32 -q
	$(PY) bench/out_of_domain.py --model src/mozart/default_model --json build/default-report/out_of_domain.json --no-write
	$(PY) -m mozart.modelcard build/default-run build/data src/mozart/default_model build/default-report \
	  --finetune build/keys-run build/data-orig

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
