# Two entry points, each creating or refreshing its own environment:
#   make demo   build a graph from a live GPT-2 run, verify it, render it (out/)
#   make test   run the whole test suite
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROMPT  ?= Transformer tokens
PLUGINS := renderers/svg renderers/bokeh

.PHONY: demo test bench system-deps clean

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS)) scripts/setup-venv
	scripts/setup-venv $(VENV) $(PLUGINS)
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p out
	$(VENV)/bin/gpt2graph build "$(PROMPT)" -o out/run.gg --verify --analyze --induction-probe 20 \
		--render svg=out/run.svg --render bokeh=out/run.html

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

bench: $(STAMP) system-deps
	$(PY) benchmarks/run.py

system-deps:
	@scripts/system-deps

clean:
	rm -rf $(VENV) out test-artifacts
