"""Import user code named as ``"package.module:attribute"``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["import_attribute"]


def import_attribute(module_name: str, attribute: str) -> Any:
    """``module_name.attribute``, importing the module from the current directory too
    (as ``python -m`` would; a console script such as ``ghn-pyg`` does not put it on
    ``sys.path``).

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: it has no such attribute.
    """
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        cwd = os.getcwd()
        top = module_name.split(".")[0]
        if err.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            sys.path.remove(cwd)
            raise
    return getattr(module, attribute)
