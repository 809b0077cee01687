"""A tiny name -> object registry (methods, targets, datasets, trainers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sarjepa.benchmark.core.errors import unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; lookups of unknown names raise a one-line ``SarjepaError``.

    Args:
        kind: what is registered, used in error messages (e.g. ``"dataset"``).
        case_insensitive: also accept any capitalisation of a registered name.
    """

    def __init__(self, kind: str, case_insensitive: bool = False) -> None:
        self.kind = kind
        self.case_insensitive = case_insensitive
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str | None = None, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator registering an object under ``name`` (default: its ``__name__``)."""

        def deco(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._items:
                raise ValueError(f"{self.kind} '{key}' is already registered")
            self._items[key] = obj
            for alias in aliases:
                self._aliases[alias] = key
            return obj

        return deco

    def add(self, name: str, obj: T, aliases: tuple[str, ...] = ()) -> None:
        """Register ``obj`` under ``name`` without a decorator."""
        self.register(name, aliases)(obj)

    def resolve(self, name: str) -> str:
        """Return the canonical registered name for ``name`` or raise ``SarjepaError``."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        if self.case_insensitive:
            for key in list(self._items) + list(self._aliases):
                if key.lower() == name.lower():
                    return self._aliases.get(key, key)
        raise unknown(self.kind, name, self._items)

    def get(self, name: str) -> T:
        """Return the object registered under ``name`` (or an alias of it)."""
        return self._items[self.resolve(name)]

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except Exception:
            return False
        return True

    def names(self) -> list[str]:
        """Sorted canonical names."""
        return sorted(self._items)

    def aliases(self, name: str) -> list[str]:
        """Sorted aliases of the canonical name ``name`` (``[]`` if it has none)."""
        return sorted(a for a, key in self._aliases.items() if key == name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
