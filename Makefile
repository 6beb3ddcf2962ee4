# labkit: every target creates or reuses .venv. Works from a clone at any path.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.labkit-installed
OUT ?= runs/demo
# Real data for `make real`: a folder `shared` beside the clone (read-only is fine; see README).
# params/real-cpu.yaml names these same places, as seen from notebooks/ (../../shared/...).
REAL_DATA := ../shared/data
REAL_MODELS := ../shared/models
REAL_OUT ?= runs/real
REAL_NEEDS := $(REAL_DATA)/oxford-iiit-pet-real $(REAL_DATA)/cifar10-real $(REAL_DATA)/cityscapes-real \
	$(REAL_MODELS)/resnet20_cifar10_45k.pt
export NO_ALBUMENTATIONS_UPDATE := 1
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: help setup demo test student-test journey-test smoke real clean

help:
	@echo "make setup   create .venv with pinned torch/torchvision and labkit[dev]"
	@echo "make demo    run notebook 01 (SMOKE) headless, then check the saved model"
	@echo "make test    the whole test suite, incl. nbval over every notebook in SMOKE mode"
	@echo "make student-test  the student wheel installed in a fresh venv, notebook 01 run from it (slow)"
	@echo "make journey-test  a TA grades a class from an LMS download, through the real checks; the GPU check on the CPU (slow)"
	@echo "make smoke   run every notebook in SMOKE mode through 'python -m labkit run'"
	@echo "make real    run every notebook in FULL mode on the real data in $(REAL_DATA), on the CPU"
	@echo "             (params/real-cpu.yaml; aims at <= 60 min on 2 cores; writes $(REAL_OUT)/summary.json)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (labkit)" >/dev/null
	touch $(STAMP)

demo: setup
	@mkdir -p $(OUT)
	LABKIT_SMOKE=1 $(PY) -m papermill -k python3 --cwd notebooks --log-output \
		notebooks/01_unet_oxford_pet.ipynb $(OUT)/01_unet_oxford_pet.ipynb \
		-p OUT_DIR "$(CURDIR)/$(OUT)" > $(OUT)/01_unet_oxford_pet.log 2>&1 \
		|| { tail -n 40 $(OUT)/01_unet_oxford_pet.log; exit 1; }
	@# SMOKE trains at 64 px on the synthetic fixture, so the check evaluates there too.
	@code=0; $(PY) checks/check_segmentation.py --model unet --path $(OUT)/saved_models/unet.pth \
		--data $(OUT)/data/oxford-iiit-pet-fixture --image-size 64 || code=$$?; \
	echo "check exit code: $$code"; \
	echo "executed notebook: $(CURDIR)/$(OUT)/01_unet_oxford_pet.ipynb"; \
	exit $$code

test: setup
	LABKIT_SMOKE=1 $(PY) -m pytest tests labkit --doctest-modules --nbval-lax notebooks -p no:cacheprovider

# The slow student-journey test (a fresh venv, the student wheel installed offline, notebook 01 from it).
student-test: setup
	LABKIT_SMOKE=1 $(PY) -m pytest -q -m student tests -p no:cacheprovider

# The slow TA-journey test (an LMS zip to gradebook, feedback, rankings and copies, every file checked),
# and benchmarks/gpu_check.py's CPU run in SMOKE size (its logic, in CI).
journey-test: setup
	LABKIT_SMOKE=1 $(PY) -m pytest -q -m journey tests -p no:cacheprovider

smoke: setup
	$(PY) -m labkit run --mode smoke --out runs/smoke

real: setup
	@if [ ! -d $(REAL_DATA) ]; then missing=" $(REAL_DATA)"; else missing=""; \
		for path in $(REAL_NEEDS); do test -e "$$path" || missing="$$missing $$path"; done; fi; \
	if [ -n "$$missing" ]; then \
		echo "make real: not found:$$missing (from $(CURDIR))"; \
		echo "make real reads the real data from $(REAL_DATA) and $(REAL_MODELS): a folder 'shared' beside"; \
		echo "this clone (see $(REAL_DATA)/README.md there). Elsewhere: copy params/real-cpu.yaml, change"; \
		echo "its paths and run: $(PY) -m labkit run --mode full --params YOUR.yaml --out $(REAL_OUT)"; \
		exit 1; \
	fi
	$(PY) -m labkit run --mode full --params params/real-cpu.yaml --out $(REAL_OUT)
	@echo "README table: $(PY) -m labkit readme-table runs/smoke/summary.json $(REAL_OUT)/summary.json"

clean:
	rm -rf runs .pytest_cache
