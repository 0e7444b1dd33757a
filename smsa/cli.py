"""The console commands (``smsa-hub``, ``smsa-agent``, ``smsa-meter-sim``, ``smsa-demo``).

Each imports its program only when run, so a Python package missing from the installation is
reported in one line that names what to install, not as a traceback: ``psycopg`` comes with the
``postgres`` extra; everything else with ``pip install smsa`` itself (missing only where the
install was made with ``--no-deps``, as on a gateway image, see the README's "Installing").
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

OWN_PACKAGES = frozenset({"agent", "demo", "firmware_sim", "hardware", "hub", "protocol", "smsa"})
EXTRAS = {"psycopg": "postgres", "psycopg_binary": "postgres"}


def install_hint(module: str) -> str:
    """What to install for the missing top-level ``module``."""
    extra = EXTRAS.get(module)
    if extra is not None:
        return f"pip install 'smsa[{extra}]'"
    return "pip install smsa (without --no-deps)"


def run(prog: str, target: str) -> int:
    """Run ``module:function`` (``main()`` returning an exit code) as the command ``prog``."""
    module, _, function = target.partition(":")
    try:
        main: Callable[[], int] = getattr(importlib.import_module(module), function)
        return main()
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if not missing or missing in OWN_PACKAGES:
            raise
        print(
            f"{prog}: the Python package {missing!r} is not installed: {install_hint(missing)}",
            file=sys.stderr,
        )
        return 1


def hub() -> int:
    return run("smsa-hub", "hub.__main__:main")


def agent() -> int:
    return run("smsa-agent", "agent.__main__:main")


def meter_sim() -> int:
    return run("smsa-meter-sim", "firmware_sim.__main__:main")


def demo() -> int:
    return run("smsa-demo", "demo.__main__:main")
