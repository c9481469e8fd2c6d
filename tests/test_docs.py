"""What the documentation names exists: commands, config keys, variables, metrics.

Scans README.md, CHANGELOG.md and docs/*.md. Commands and config keys are looked
for in code (inline spans and fenced blocks), where the docs name them exactly;
variables and metrics anywhere. A name that looks like one of these but is not is
listed below with the reason.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streammeta import config, envvars
from streammeta.cli import build_parser
from streammeta.serve.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]

# Names in the docs that look like a key, variable or metric but are meant otherwise.
NOT_KEYS = {
    "model.adapt": "README: the function in streammeta/online/model.py, not a key",
}
NOT_VARIABLES = {
    "STREAMMETA_KAFKA_BOOTSTRAPSERVERS": "operations.md: the misspelling check-config catches",
}
# A metric family's samples carry suffixes (_bucket, _count, _sum, _created, _total);
# the registry lists them all, so a name with a suffix needs no exception.
NOT_METRICS: dict[str, str] = {}

_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
# `streammeta CMD` at the start of a command line: after `$ `, assignments or `&&`.
_COMMAND = re.compile(r"(?:^|\n|&&|;)[ \t]*(?:\$[ \t]*)?(?:[A-Z_][A-Z0-9_]*=\S*[ \t]+)*"
                      r"(?:python -m )?streammeta[ \t]+([a-z][a-z-]*|-[-\w]+)")
_SECTIONS = "|".join(config.sections())
_KEY = re.compile(rf"(?<![\w./-])({_SECTIONS})\.([a-z_][a-z0-9_]*)\b(?!\.\w)")
_TABLE_KEY = re.compile(rf"\[({_SECTIONS})\][ \t]+([a-z_][a-z0-9_]*)[ \t]*=")
_FILE_EXTENSIONS = {"py", "md", "toml", "json", "yaml", "csv"}
_VARIABLE = re.compile(r"\bSTREAMMETA_[A-Z0-9_]*[A-Z0-9]")
_METRIC = re.compile(r"\bstreammeta_[a-z0-9_]*[a-z0-9]")


def _code(path: Path) -> list[str]:
    return [span.strip("`") for span in _CODE.findall(path.read_text())]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def _commands_and_options() -> set[str]:
    parser = build_parser()
    names = {opt for action in parser._actions for opt in action.option_strings}
    for action in parser._actions:
        if action.choices and isinstance(action.choices, dict):  # the subcommands
            names |= set(action.choices)
    return names


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_every_command_named_exists(path: Path) -> None:
    known = _commands_and_options()
    named = {match for code in _code(path) for match in _COMMAND.findall(code)}
    assert named - known == set(), f"{path.name} names commands the CLI does not have"


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_every_config_key_named_exists(path: Path) -> None:
    keys = set()
    for section, cls in config.sections().items():
        for item in dataclasses.fields(cls):
            keys.add(f"{section}.{item.name}")
            if envvars.is_secret(item.name):
                keys.add(f"{section}.{item.name}{envvars.FILE_SUFFIX}")
    named = set()
    for code in _code(path):
        found = _KEY.findall(code) + _TABLE_KEY.findall(code)
        named |= {f"{s}.{k}" for s, k in found if k not in _FILE_EXTENSIONS}
    assert named - keys - set(NOT_KEYS) == set(), f"{path.name} names unknown config keys"


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_every_environment_variable_named_is_read(path: Path) -> None:
    known = envvars.known_variables(config.sections())
    named = set(_VARIABLE.findall(path.read_text()))
    assert named - set(known) - set(NOT_VARIABLES) == set(), (
        f"{path.name} names STREAMMETA_* variables nothing reads")


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_every_metric_named_is_exported(path: Path) -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    exported = {name for family in registry.collect()
                for name in [family.name, *(s.name for s in family.samples)]}
    named = set(_METRIC.findall(path.read_text()))
    assert named - exported - set(NOT_METRICS) == set(), (
        f"{path.name} names metrics serve/metrics.py does not export")


def test_the_scan_finds_what_it_checks() -> None:
    """Guards the patterns: a scan that matched nothing would pass every test above."""
    text = "\n".join(code for path in DOCS for code in _code(path))
    assert {"check-config", "pretrain", "--version"} <= set(_COMMAND.findall(text))
    assert ("meta", "guard") in _KEY.findall(text)
    assert ("memory", "enabled") in _TABLE_KEY.findall(text)
    assert "streammeta_build_info" in _METRIC.findall(
        (ROOT / "docs" / "operations.md").read_text())
    assert ("model", "py") in _KEY.findall("`model.py`")  # skipped as a file name
    for exceptions in (NOT_KEYS, NOT_VARIABLES, NOT_METRICS):
        for name, reason in exceptions.items():
            assert any(name in path.read_text() for path in DOCS), f"stale exception {name}"
            assert reason
