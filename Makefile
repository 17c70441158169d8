# `make check` is the one command: ruff, mypy --strict on ami_listener and the tests all run
# inside pytest (tests/test_quality.py), so CI and developers run the same thing.
.PHONY: check test fmt bench
check test:
	.venv/bin/python -m pytest
fmt:
	.venv/bin/ruff format ami_listener tests bench agi
	.venv/bin/ruff check --fix ami_listener tests bench agi
bench:
	.venv/bin/python bench/store_bench.py
