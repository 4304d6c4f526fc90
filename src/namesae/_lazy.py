"""Lazy package exports (PEP 562): a package names its public objects by submodule and imports each on first use.

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {".edits": ("Edit", "parse_edits"), ...})

so `import namesae.steer` costs nothing until a name is used, `from namesae.steer import Edit` imports only
`namesae.steer.edits`, and `namesae.steer.edits` (a submodule not yet imported) is imported when reached."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """A package's `__getattr__`, `__dir__` and `__all__` from {module: its public names}; a module starting
    with "." is relative to the package."""
    home = {name: module for module, names in exports.items() for name in names}
    public = sorted(home)

    def __getattr__(name: str) -> Any:
        """Import a public name's module (or a submodule) on first use and keep the value on the package."""
        if name in home:
            value = getattr(importlib.import_module(home[name], package), name)
        elif importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        """The public names and whatever the package already holds (for tab completion)."""
        return sorted({*public, *vars(sys.modules[package])})

    return __getattr__, __dir__, public
