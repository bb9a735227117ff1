"""Loading the scripts in the repository's ``examples/`` folder for the tests in this folder.

The examples are scripts, not a package, so the tests import each one from its file. This is a
helper module, not a test file; ``conftest.py`` puts this folder on ``sys.path`` so that the test
files can ``from example_modules import load_example`` under any pytest import mode.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> types.ModuleType:
    """Import ``examples/<name>.py`` as a module named ``name`` and return it.

    Every call runs the script's top level afresh (not its ``main``), and the new module replaces
    any earlier ``sys.modules[name]``.
    """
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # Registered under its name before it runs: torch.compile looks the module up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
