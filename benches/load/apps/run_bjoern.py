"""Runs MODULE's `application` under bjoern: python run_bjoern.py MODULE PORT."""

import importlib
import sys

import bjoern

module = importlib.import_module(sys.argv[1])
bjoern.run(module.application, "127.0.0.1", int(sys.argv[2]))
