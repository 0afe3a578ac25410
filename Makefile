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

demo: provision
	bash scripts/demo.sh

bench: provision
	$(VENV)/python bench/local_overhead.py
	$(VENV)/python bench/daemon_scale.py
	$(VENV)/python bench/ftps_backup.py
	$(VENV)/python bench/remote_wan.py

clean:
	rm -rf .venv .tools worker-image/dist/rustic
