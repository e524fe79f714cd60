# The course's commands. Only Python 3.10+ and make are needed; everything else is installed
# into .venv by `make setup` (the other targets run it first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BUILD  := build

.PHONY: setup lint course site slides test test-fast lab explore checkpoints ablation findings homework handouts clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "installing PyTorch and the course's dependencies into $(VENV)/ (a few GB the first time; pip shows errors only)"
	$(BIN)/pip install --quiet --quiet --upgrade pip
	$(BIN)/pip install --quiet --quiet -e ".[dev]"
	$(BIN)/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	@# The browser test drives Debian's Chromium (never a browser download of Playwright's own).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: Chromium not installed (run 'sudo apt-get install chromium'); the browser test will skip"
	touch $@

# The scripts the offline slides and the site serve locally (reveal.js, require.js, jQuery, MathJax),
# pinned in package.json / package-lock.json and installed from the npm registry.
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "note: npm not found (install Node.js); make slides and make site need the scripts it installs"; fi

## Lint, format check and type check of the package, tests and benchmarks (CI runs it first).
lint: setup
	$(BIN)/ruff check course_utils tests benchmarks
	$(BIN)/ruff format --check course_utils tests benchmarks
	$(BIN)/mypy

## The course's main job: execute every notebook headless into build/course/ (with timings.json),
## then build the course site -> build/site/_build/html/index.html.
course: setup
	$(BIN)/python -m course_utils.build course --executed $(BUILD)/course --site $(BUILD)/site

## The course site only (Jupyter Book), reusing build/course's executed notebooks that are newer
## than their sources (stale ones execute first).
site: setup
	$(BIN)/python -m course_utils.build site --executed $(BUILD)/course --site $(BUILD)/site

## One offline reveal.js deck per notebook -> build/slides/ (scripts in build/slides/_vendor/),
## reusing build/course's executed notebooks like `make site`.
slides: setup
	$(BIN)/python -m course_utils.build slides --executed $(BUILD)/course --out $(BUILD)/slides

## The whole test suite, notebooks included (this is what CI runs). Tests never download:
## pretrained weights come from the torch cache or a test's own temporary one.
test: setup
	COURSE_OFFLINE=1 $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider

## Quick loop while developing: unit tests only, no slow ones, no notebooks.
test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow"

## Open JupyterLab at the repository root (notebooks/ and homework/ both reachable); as root too.
lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $$([ "$$(id -u)" = 0 ] && echo --allow-root)

## The explorers as a standalone app for lectures: Voila serves notebooks/explore.ipynb without its
## code cells at http://localhost:8866 (the shipped model, the embedded validation images).
explore: setup
	$(BIN)/voila notebooks/explore.ipynb --strip_sources=True

## Retrain the shipped checkpoints in data/checkpoints/ (about 10 + 4 minutes on 2 cores):
## the course's model with its epoch snapshots, then notebook 07's AlexNet-like first layer.
checkpoints: setup
	$(BIN)/python -m course_utils.train --dataset embedded --epochs 5 --snapshots 1,2,3 --out data/checkpoints
	cp data/checkpoints/final.pt data/checkpoints/.arch_7x7s2.tmp && mv data/checkpoints/.arch_7x7s2.tmp data/checkpoints/arch_7x7s2.pt
	$(BIN)/python -m course_utils.train --dataset embedded --epochs 5 --conv1 11/4 --out $(BUILD)/arch_11x11s4
	cp $(BUILD)/arch_11x11s4/final.pt data/checkpoints/.arch_11x11s4.tmp && mv data/checkpoints/.arch_11x11s4.tmp data/checkpoints/arch_11x11s4.pt

## Notebook 07's precomputed tables: Table 3 -> data/ablation.json, Fig 6 -> data/arch_selection.json
## (3 + 8 variants x 3 seeds, about 4 hours on 2 cores: the README gives the time;
## interrupt and re-run to resume).
ablation: setup
	$(BIN)/python -m course_utils.ablation --table architecture
	$(BIN)/python -m course_utils.ablation

## The reproduction scoreboard: every finding of the paper on the shipped model and the tables
## above, one row each; last line "findings reproduced: N of 8".
findings: setup
	$(BIN)/python -m course_utils.findings

## Homework: reference data and student versions from the solution sources (commit both).
homework: setup
	$(BIN)/python -m course_utils.homework references
	$(BIN)/python -m course_utils.homework generate --out homework/

## One zip per assignment for students -> build/handouts/<name>.zip
handouts: setup
	$(BIN)/python -m course_utils.homework handout hw1_deconv hw2_occlusion hw3_correspondence hw4_receptive_field --out $(BUILD)/handouts

clean:
	rm -rf $(BUILD) data/cache node_modules
