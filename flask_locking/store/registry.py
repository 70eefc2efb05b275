"""Stores by URI scheme: each store class declares its schemes, and a URI picks one.

``LOCKING_DATABASE_URI = "memory://"`` or ``"postgresql+psycopg://..."`` is looked up here;
a host makes its own store known with :func:`register_store` (docs/stores.rst).
"""

from __future__ import annotations

from typing import Any, TypeVar

from .base import LockStore, StoreOptions

S = TypeVar("S", bound=type[LockStore])

_BY_SCHEME: dict[str, type[LockStore]] = {}


def register_store(store_class: S) -> S:
    """Serve each of ``store_class.schemes`` with ``store_class`` (usable as a class
    decorator). A later registration of a scheme replaces the earlier one, so a host can
    also replace a built-in store."""
    if not store_class.schemes:
        raise ValueError(f"{store_class.__name__} declares no URI schemes (its 'schemes').")
    for scheme in store_class.schemes:
        _BY_SCHEME[scheme.lower()] = store_class
    return store_class


def registered_schemes() -> list[str]:
    """Every scheme a store is registered for, sorted."""
    return sorted(_BY_SCHEME)


def store_class_for(uri: str) -> type[LockStore]:
    """The class serving ``uri``'s scheme: the exact scheme (``postgresql+psycopg``), else
    its name before the ``+`` (``postgresql``)."""
    scheme, separator, _ = uri.partition(":")
    scheme = scheme.lower()
    if not separator or not scheme:
        raise ValueError(f"A lock store URI needs a scheme ('memory://', ...), not {uri!r}.")
    found = _BY_SCHEME.get(scheme) or _BY_SCHEME.get(scheme.partition("+")[0])
    if found is None:
        raise ValueError(
            f"No lock store is registered for the {scheme!r} scheme (known: "
            f"{', '.join(registered_schemes())}); register one with "
            "flask_locking.store.register_store."
        )
    return found


def store_from_uri(uri: str, **options: Any) -> LockStore:
    """The store for ``uri``, built by its class's :meth:`~LockStore.from_uri` with
    :class:`StoreOptions` made of ``options`` (``table_name``, ``timeout``, ...)."""
    return store_class_for(uri).from_uri(uri, StoreOptions(**options))
