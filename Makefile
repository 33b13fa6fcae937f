# Thin wrappers around tasks.py, which needs nothing but python3.
PY ?= python3

.PHONY: demo test lint typing tox ci bench bench-smoke

demo:
	$(PY) tasks.py demo

test:
	$(PY) tasks.py test

lint:
	$(PY) tasks.py lint

typing:
	$(PY) tasks.py typing

tox:
	$(PY) tasks.py tox

ci:
	bash .ci/run

bench:
	$(PY) tasks.py bench

bench-smoke:
	$(PY) tasks.py bench --smoke
