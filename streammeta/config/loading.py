"""Loading: ``config.toml`` and the environment → a validated :class:`Config`, and
the effective configuration back as TOML (``streammeta check-config``)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from typing import Any

from streammeta import envvars
from streammeta.config.sections import check
from streammeta.config.tree import Config, sections
from streammeta.errors import ConfigError


def _coerce(key: str, raw: object, kind: Any, from_env: bool) -> object:
    """Turn a TOML (or environment string) value into the field's type, strictly."""
    if from_env:
        assert isinstance(raw, str)
        if kind is bool:
            lowered = raw.strip().lower()
            check(key, raw, lowered in ("true", "false", "1", "0", "yes", "no"), "a boolean")
            return lowered in ("true", "1", "yes")
        if kind is int:
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(key, raw, "an integer") from None
        if kind is float:
            try:
                return float(raw)
            except ValueError:
                raise ConfigError(key, raw, "a number") from None
        if typing.get_origin(kind) is tuple:
            try:
                return tuple(float(part) for part in raw.split(",") if part.strip())
            except ValueError:
                raise ConfigError(key, raw, "comma-separated numbers") from None
        return raw
    if kind is bool:
        check(key, raw, isinstance(raw, bool), "true or false")
        return raw
    if kind is int:
        check(key, raw, isinstance(raw, int) and not isinstance(raw, bool), "an integer")
        return raw
    if kind is float:
        check(key, raw, isinstance(raw, int | float) and not isinstance(raw, bool), "a number")
        return float(raw)  # type: ignore[arg-type]
    if typing.get_origin(kind) is tuple:
        items = raw if isinstance(raw, list) else []
        ok = isinstance(raw, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in items
        )
        check(key, raw, ok, "a list of numbers")
        return tuple(float(v) for v in items)
    check(key, raw, isinstance(raw, str), "a string")
    return raw


def _build(section: str, cls: type, table: Mapping[str, object], env: Mapping[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    table, from_files = envvars.secrets_from_files(section, names, table, env)
    for unknown in sorted(set(table) - names):
        raise ConfigError(
            f"{section}.{unknown}", table[unknown], f"one of the keys {sorted(names)}")
    values: dict[str, object] = {}
    for name in names:
        key = f"{section}.{name}"
        env_name = envvars.env_name(section, name)
        if env_name in env:
            values[name] = _coerce(key, env[env_name], hints[name], from_env=True)
        elif name in from_files:
            values[name] = _coerce(key, from_files[name], hints[name], from_env=True)
        elif name in table:
            values[name] = _coerce(key, table[name], hints[name], from_env=False)
    return cls(**values)


def load(path: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or only defaults when ``None``), apply environment overrides, validate."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError("(file)", str(path), "an existing config.toml") from None
        except UnicodeDecodeError as exc:  # TOML is UTF-8: a UTF-16 or Latin-1 file
            raise ConfigError("(file)", str(path), f"a UTF-8 TOML file (byte {exc.start} "
                              "is not UTF-8)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("(file)", str(path), f"valid TOML ({exc})") from None
        except OSError as exc:  # a directory, no permission
            raise ConfigError("(file)", str(path), f"a readable config.toml "
                              f"({exc.strerror or exc})") from None
    tables = sections()
    for unknown in sorted(set(data) - set(tables)):
        raise ConfigError(unknown, "[section]", f"one of the sections {sorted(tables)}")
    built = {}
    for name, cls in tables.items():
        table = data.get(name, {})
        check(name, table, isinstance(table, dict), "a [section] table")
        built[name] = _build(name, cls, table, env)
    return Config(**built)


def to_toml(config: Config, mask_secrets: bool = True) -> str:
    """The effective configuration as TOML text; secrets are masked."""
    lines: list[str] = []
    for section in dataclasses.fields(config):
        lines.append(f"[{section.name}]")
        for item in dataclasses.fields(getattr(config, section.name)):
            value = getattr(getattr(config, section.name), item.name)
            if mask_secrets and envvars.is_secret(item.name) and value:
                value = "***"
            lines.append(f"{item.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
