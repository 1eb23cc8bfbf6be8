"""An operator's own class, named in the config as `module:Class` with keyword `options`
(`policy.class`, `li.class`). Errors name the file, the key and the reason, like every
config error."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ConfigError


def instantiate(file: str, section: str, spec: Any, options: Any) -> object:
    """`module:Class(**options)`; raises ConfigError at `<section>.class`/`<section>.options`.
    Whether the object implements the wanted protocol is the caller's check."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigError(file, f"{section}.class", "must be 'module:Class'")
    mod_name, _, cls_name = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(file, f"{section}.class", f"cannot import {mod_name}: {e}") from None
    cls = getattr(mod, cls_name, None)
    if cls is None or not callable(cls):
        raise ConfigError(file, f"{section}.class", f"{mod_name} has no class {cls_name}")
    if options is None:
        options = {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ConfigError(file, f"{section}.options", "must be a mapping")
    try:
        return cls(**options)
    except Exception as e:  # any constructor failure is a configuration problem
        raise ConfigError(file, f"{section}.options", f"{spec}: {e}") from None
