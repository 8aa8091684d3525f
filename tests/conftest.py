"""Loads the suite's shared helpers and fixtures (``tests/plugin.py``).

``plugin`` holds the thread-leak check around every test, the ``backend`` and
``conn`` fixtures, the ``backend(name)`` marker's skip/fail, and the helpers
test modules import (``Recorder``, ``wait_until``, ``closed_port``,
``require``...).  The backend registry itself is ``benchmarks/backends.py``.
"""

pytest_plugins = ["plugin"]
