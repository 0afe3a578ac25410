# Developer commands (DESIGN.md). `make test` is what CI runs.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: provision test lint unit demo bench clean

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

clean:
	rm -rf .venv .tools worker-image/dist/rustic
