# labkit, student edition: every target creates or reuses .venv. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.labkit-installed
OUT ?= runs/demo
export NO_ALBUMENTATIONS_UPDATE := 1
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: help setup doctor selfcheck demo smoke clean

help:
	@echo "make setup      create .venv with pinned torch/torchvision and labkit (editable: your edits count)"
	@echo "make doctor     check the environment: versions, GPU, Jupyter kernel, datasets"
	@echo "make selfcheck  check the functions you implement in labkit/, each on its own"
	@echo "make demo       run notebook 01 (SMOKE) headless with your code, then check the saved model"
	@echo "make smoke      run every notebook in SMOKE mode (a notebook stops at the first TODO left)"
	@echo "make clean      delete runs/ (outputs of demo and smoke)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (labkit)" >/dev/null
	touch $(STAMP)

doctor: setup
	$(PY) -m labkit doctor

selfcheck: setup
	$(PY) -m labkit selfcheck all

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

smoke: setup
	$(PY) -m labkit run --mode smoke --out runs/smoke

clean:
	rm -rf runs .pytest_cache
