"""Makes ``example_modules`` (the helper that loads ``examples/*.py``) importable by the tests here.

The project runs pytest with ``--import-mode=importlib``, which does not put a test file's folder
on ``sys.path``; pytest loads this conftest before it imports the test files next to it.
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
