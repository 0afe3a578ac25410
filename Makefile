# Developer commands (DESIGN.md). `make test` is what CI runs.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: provision test lint unit demo bench soak clean

provision:
	bash scripts/provision.sh

lint:
	$(VENV)/ruff check orchestrator tests bench
	$(VENV)/ruff format --check orchestrator tests bench
	$(VENV)/mypy

test: provision lint
	$(VENV)/pytest

# Only the pure tests: no Docker, no rustic; seconds.
unit:
	$(VENV)/pytest -m "not docker and not rustic"

# The demo needs Docker, rustic, the worker image and the venv: not MinIO, versitygw or the
# monitoring tools the tests run against, so a fresh server needs no Go for it.
demo:
	bash scripts/provision.sh rustic docker base worker venv
	bash scripts/demo.sh

bench: provision
	$(VENV)/python bench/local_overhead.py
	$(VENV)/python bench/daemon_scale.py
	$(VENV)/python bench/ftps_backup.py
	$(VENV)/python bench/remote_wan.py

# The compound-fault soak (bench/soak.py): `make soak MINUTES=20 SEED=3`. Not part of `make
# test`, which runs its short variant (tests/test_soak.py).
MINUTES ?= 5
SEED ?= 1
soak: provision
	$(VENV)/python bench/soak.py --minutes $(MINUTES) --seed $(SEED)

clean:
	rm -rf .venv .tools worker-image/dist/rustic
