"""The configuration's environment: override variables, secret files, unknown names.

Every key ``section.key`` can be set by ``STREAMMETA_<SECTION>_<KEY>``. Every key
whose name ends in ``password``, ``secret`` or ``token`` is a secret: masked by
``check-config``, and it can also be read from a file (how Kubernetes and systemd
mount secrets) through ``<key>_file`` in the TOML or ``STREAMMETA_<SECTION>_<KEY>_FILE``.
A key added to a config dataclass gets both for free.

Precedence, highest first: the variable, the variable's ``_FILE``, the TOML key,
the TOML ``_file`` key. Setting a value and its file in the same place is an error.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping

from streammeta.errors import ConfigError

ENV_PREFIX = "STREAMMETA_"
SECRET_SUFFIXES = ("password", "secret", "token")
FILE_SUFFIX = "_file"

# STREAMMETA_* variables that are not configuration keys, and who reads them. A new
# one must be listed here, or check-config calls it unknown.
OTHER_VARIABLES: dict[str, str] = {
    "STREAMMETA_CONFIG": "the config file read by run and check-config",
    "STREAMMETA_CRASH_STEPS": "the length of tests/integration/test_crash.py's stream",
    "STREAMMETA_DATA_DIR": "the shared data sets (streammeta.io.datasets)",
    "STREAMMETA_FUZZ_RECORDS": "the records of tests/integration/test_fuzz_live.py",
    "STREAMMETA_TEST_BROKER": "the integration tests' broker",
    "STREAMMETA_TEST_CHECKPOINTS": "the integration tests' checkpoint store (s3: a moto server)",
    "STREAMMETA_TOOLS_DIR": "the tool cache of deploy/check.sh",
}


def is_secret(name: str) -> bool:
    """A key that holds a secret: masked when printed, readable from a file."""
    return name.endswith(SECRET_SUFFIXES)


def env_name(section: str, name: str) -> str:
    return f"{ENV_PREFIX}{section}_{name}".upper()


def known_variables(sections: Mapping[str, type]) -> dict[str, str]:
    """Every variable streammeta reads → the key it sets (or what it is for)."""
    known = dict(OTHER_VARIABLES)
    for section, cls in sections.items():
        for item in dataclasses.fields(cls):
            key = f"{section}.{item.name}"
            known[env_name(section, item.name)] = key
            if is_secret(item.name):
                known[env_name(section, item.name + FILE_SUFFIX)] = key + FILE_SUFFIX
    return known


def unknown_variables(env: Mapping[str, str], sections: Mapping[str, type]) -> list[str]:
    """One message per ``STREAMMETA_*`` variable that nothing reads, with the closest
    known one as a suggestion: a misspelled override is otherwise silently ignored."""
    known = known_variables(sections)
    # Compared without the prefix they all share, which would make any two look alike.
    tails = {name[len(ENV_PREFIX):]: name for name in known}
    messages = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        close = [tails[t] for t in difflib.get_close_matches(
            name[len(ENV_PREFIX):], list(tails), n=1, cutoff=0.6)]
        hint = f" (did you mean {close[0]}, {known[close[0]]}?)" if close else ""
        messages.append(f"unknown environment variable {name}{hint}")
    return messages


def read_secret_file(key: str, path: str, origin: str) -> str:
    """The secret in ``path``, without its trailing newline (editors and ``echo`` add one)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(key, path, f"a readable file holding the secret, set by {origin} "
                          f"({reason})") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ConfigError(key, path, f"a file holding a non-empty secret, set by {origin}")
    return secret


def secrets_from_files(section: str, names: set[str], table: Mapping[str, object],
                       env: Mapping[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    """Split the ``*_file`` keys off ``table`` and read the files that win.

    Returns the table without its ``_file`` keys, and ``name → secret`` for each key
    whose value comes from a file (see the module's precedence)."""
    rest = dict(table)
    from_files: dict[str, str] = {}
    for name in sorted(n for n in names if is_secret(n)):
        key, file_key = f"{section}.{name}", f"{section}.{name}{FILE_SUFFIX}"
        var, file_var = env_name(section, name), env_name(section, name + FILE_SUFFIX)
        table_file = rest.pop(name + FILE_SUFFIX, "")
        if not isinstance(table_file, str):
            raise ConfigError(file_key, table_file, "a path (a string)")
        if var in env and file_var in env:
            raise ConfigError(key, "***", f"either {var} or {file_var}, not both")
        if table_file and name in rest:
            raise ConfigError(key, "***", f"either {name} or {name}{FILE_SUFFIX} in "
                              f"[{section}], not both")
        if var in env:
            continue  # the variable itself wins; the loader reads it
        if file_var in env:
            from_files[name] = read_secret_file(file_key, env[file_var], file_var)
        elif table_file and name not in rest:
            from_files[name] = read_secret_file(file_key, table_file, f"[{section}] "
                                                f"{name}{FILE_SUFFIX}")
    return rest, from_files
