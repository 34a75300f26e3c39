"""lmnt's ``diffwave.params`` for scripts written against the original package.

``from diffwave.params import params, AttrDict`` keeps working: ``params`` is our default
configuration in lmnt's flat key names (built from :class:`diffwave.config.DiffWaveConfig`,
not a second copy of the defaults), and ``AttrDict`` is a dict with attribute access and
lmnt's ``override``. New code should use :class:`DiffWaveConfig` instead.
"""

from __future__ import annotations

from typing import Any

from .config import DiffWaveConfig


class AttrDict(dict):
    """A dict whose keys are also attributes, with lmnt's ``override(dict | list of dicts)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "__dict__", self)  # as lmnt's: vars(params) and params.__dict__ show the keys

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def override(self, attrs: Any) -> "AttrDict":
        if isinstance(attrs, dict):
            self.update(attrs)
        elif isinstance(attrs, (list, tuple, set)):
            for item in attrs:
                self.override(item)
        elif attrs is not None:
            raise NotImplementedError(f"cannot override params with {type(attrs).__name__}")
        return self


params = AttrDict(DiffWaveConfig().to_params())
