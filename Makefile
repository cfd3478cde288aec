# xlstm_ros: the README's two commands are `make demo` and `make test`; both set everything up first.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin

# Every ROS process started from here stays on this machine, on a domain of its own, logging in the tree.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= $(shell shuf -i 1-100 -n 1)
export ROS_LOG_DIR := $(CURDIR)/log/ros
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
export AMENT_PREFIX_PATH := $(CURDIR)/$(VENV)$(if $(AMENT_PREFIX_PATH),:$(AMENT_PREFIX_PATH))
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup setup-test demo test test-all bench soak clean

setup:
	tools/setup_venv.sh

setup-test:
	tools/setup_venv.sh requirements/test.txt requirements/eval.txt

## make demo: set up, then run the main job (nodes over real DDS, outputs under out/demo)
demo: setup
	$(BIN)/xlstm-ros demo

## make test: set up, then run the test suite (slow cases excluded; `make test-all` runs them too)
test: setup-test
	$(BIN)/python -m pytest

test-all: setup-test
	$(BIN)/python -m pytest -m "slow or not slow"

## make bench: every benchmark side by side (about 25 minutes); JSON in bench/results/, tables in the READMEs
bench: setup-test
	$(BIN)/python -m bench.run

## make soak: the demo graph at full rate for 10 minutes; writes bench/results/soak.json (not in `make test`)
soak: setup
	$(BIN)/python -m bench.soak --duration-s 600 --out bench/results/soak.json

clean:
	rm -rf build log out .pytest_cache *.egg-info
