"""Config dataclasses are data: a key that is not a field (a typo in a yaml file) fails loudly."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sb3_pvdr.common.errors import ConfigError


def check_config_keys(cls: type, data: dict[str, Any], what: str) -> None:
    """Raise :class:`ConfigError` naming the unknown keys of ``data`` and the valid ones of dataclass ``cls``.

    :param cls: the config dataclass
    :param data: the keys given (yaml, json, checkpoint or command line)
    :param what: how the message names the config, e.g. ``"tokenizer config"``
    """
    valid = sorted(f.name for f in fields(cls))
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; valid keys: {valid}")
