# -*- test-case-name: tests.test_config -*-
"""
The checks every section of the configuration is made of: the shape of a
YAML value (a mapping with known keys) and its scalars (integers in a range,
seconds, booleans, non-empty strings, choices), each raising a
L{ConfigError} that names the key and says what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from mqttx.config.values import ConfigError


def _describe(value: object) -> str:
    """Name a YAML value in an error message the way the user wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


_T = TypeVar("_T")
_C = TypeVar("_C")


class _Checks:
    """
    The checks of one document's shapes and scalars, for the section parsers
    built on it; C{source} goes into every error.
    """

    def __init__(self, source: str) -> None:
        self._source = source

    def _error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self._source, key, problem)

    # Shapes

    def _section(self, value: object, key: str, what: str | None = None) -> Mapping[str, object]:
        """A mapping with string keys; an absent or empty section is C{{}}."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self._error(key or (what or ""), f"expected a mapping, got {_describe(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self._error(key or (what or ""), f"keys must be strings, got {_describe(k)}")
        return value

    def _known(self, section: Mapping[str, object], prefix: str, known: tuple[str, ...]) -> None:
        for k in section:
            if k not in known:
                raise self._error(
                    _join(prefix, k), f"unknown key (expected one of: {_choices(known)})"
                )

    def _get(
        self,
        section: Mapping[str, object],
        prefix: str,
        name: str,
        default: _T,
        check: Callable[[object, str], _T],
    ) -> _T:
        if name not in section:
            return default
        return check(section[name], _join(prefix, name))

    def _fields(
        self,
        cls: Callable[..., _C],
        section: Mapping[str, object],
        prefix: str,
        checks: Mapping[str, Callable[[object, str], Any]],
    ) -> _C:
        """
        Build C{cls} (a dataclass with defaults) from C{section}: each of
        its fields by its check in C{checks} when the key is there, its
        default otherwise. Checks run, and errors are reported, in the
        order of C{checks}, which must name every field.
        """
        defaults: Any = cls()
        assert checks.keys() == {f.name for f in fields(defaults)}, f"every {prefix} key is checked"
        return cls(
            **{key: self._get(section, prefix, key, getattr(defaults, key), check) for key, check in checks.items()}
        )

    # Scalars

    def _int(self, value: object, key: str, low: int, high: int | None = None) -> int:
        # YAML's true/false are Python bools, which are ints: refuse them here.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._error(key, f"expected an integer, got {_describe(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self._error(key, f"must be {bounds}, got {value}")
        return value

    def _seconds(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(key, f"expected a number of seconds, got {_describe(value)}")
        if not 0 <= value <= 3600:
            raise self._error(key, f"must be between 0 and 3600, got {value}")
        return float(value)

    def _number(self, value: object, key: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(key, f"expected a number, got {_describe(value)}")
        if not low <= value <= high:
            raise self._error(key, f"must be between {low:g} and {high:g}, got {value}")
        return float(value)

    def _bool(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self._error(key, f"expected true or false, got {_describe(value)}")
        return value

    def _str(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            raise self._error(key, f"expected a string, got {_describe(value)}")
        if not value.strip():
            raise self._error(key, "must not be empty")
        return value

    def _optional_str(self, value: object, key: str) -> str | None:
        return None if value is None else self._str(value, key)

    def _names(self, value: object, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self._error(key, f"expected a list of names, got {_describe(value)}")
        return tuple(self._str(item, f"{key}[{index}]") for index, item in enumerate(value))

    def _choice(self, value: object, key: str, choices: tuple[str, ...]) -> str:
        text = self._str(value, key)
        if text not in choices:
            raise self._error(key, f"expected one of: {_choices(choices)}, got {text!r}")
        return text
