"""``flask locks``: inspect and manage locks from the command line.

Registered on every app by :meth:`flask_locking.Locking.init_app`::

    flask locks list [--prefix /docs] [--json]
    flask locks show /docs/1 [--json]
    flask locks release /docs/1 [--force | --token T | --owner ID]
    flask locks purge
    flask locks create-table
    flask locks openapi

Every command that prints locks prints a table a person can read, or with ``--json`` one
JSON document for scripts. Tokens are never printed. Errors exit with status 1 and a
message on standard error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup

from .engine import UNSET
from .errors import InvalidResource, LockingError
from .keys import resolve
from .lock import UNLOCKED_JSON, Lock
from .resources import normalize
from .state import locking_state

if TYPE_CHECKING:
    from .state import LockingState

F = TypeVar("F", bound=Callable[..., Any])

#: Most spaces per level ``flask locks openapi --indent`` takes (a huge one would make the
#: document gigabytes of spaces: the command would hang and exhaust memory).
MAX_INDENT = 16

#: The ``flask locks`` command group.
locks_cli = AppGroup("locks", help="Inspect and manage flask-locking locks.")


def _state() -> LockingState:
    try:
        return locking_state()
    except RuntimeError:
        raise click.ClickException("flask-locking is not set up on this app.") from None


@contextmanager
def _errors() -> Iterator[None]:
    """Turn locking errors into a one-line message and exit status 1, never a traceback."""
    try:
        yield
    except LockingError as error:
        raise click.ClickException(str(error)) from None


def _owner_text(lock: Lock) -> str:
    if lock.owner is None:
        return "(anonymous)"
    if lock.owner.name and lock.owner.name != lock.owner.id:
        return f"{lock.owner.name} <{lock.owner.id}>"
    return lock.owner.id


def _remaining(lock: Lock) -> str:
    seconds = max(0, int(lock.expires_at - datetime.now(timezone.utc).timestamp()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _key(state: LockingState, resource: str) -> str:
    """The key RESOURCE names: as given when a live lock is on it (a key copied from
    ``flask locks list``, even one the app's routes no longer give), else as the Python API
    and the guard key it (the canonical route: ``/items/07`` is ``/items/7``)."""
    key = normalize(resource)
    if state.engine.get(key) is not None:
        return key
    try:
        return resolve(state, key)
    except InvalidResource:
        return key


@locks_cli.command("list")
@click.option("--prefix", default=None, help="Only locks on this path and below it.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of lock objects.")
def list_command(prefix: str | None, as_json: bool) -> None:
    """List the live locks."""
    with _errors():
        locks = _state().engine.locks(prefix)
    if as_json:
        _echo_json([lock.without_token().to_json() for lock in locks])
        return
    if not locks:
        where = f" on {prefix} or below" if prefix else ""
        click.echo(f"No live locks{where}.")
        return
    rows = [
        [
            lock.resource,
            _owner_text(lock),
            lock.expires.isoformat(timespec="seconds"),
            _remaining(lock),
            "yes" if lock.stealable else "no",
            str(lock.depth),
            str(lock.version),
        ]
        for lock in locks
    ]
    headers = ["RESOURCE", "OWNER", "EXPIRES", "LEFT", "STEALABLE", "DEPTH", "VERSION"]
    click.echo(_table(rows, headers))
    click.echo(f"\n{len(locks)} live lock{'s' if len(locks) != 1 else ''}.")


@locks_cli.command("show")
@click.argument("resource")
@click.option("--json", "as_json", is_flag=True, help="Print the lock JSON.")
def show_command(resource: str, as_json: bool) -> None:
    """Show the lock on RESOURCE (a URL path such as /docs/1)."""
    with _errors():
        state = _state()
        key = _key(state, resource)
        lock = state.engine.get(key)
    if as_json:
        _echo_json(lock.without_token().to_json() if lock is not None else UNLOCKED_JSON)
        return
    if lock is None:
        click.echo(f"{key} is not locked.")  # the key looked up, not the text typed
        return
    fields = [
        ("resource", lock.resource),
        ("owner", _owner_text(lock)),
        ("owner url", lock.owner.url if lock.owner and lock.owner.url else "-"),
        ("locked at", lock.created.isoformat(timespec="seconds")),
        ("expires", f"{lock.expires.isoformat(timespec='seconds')} (in {_remaining(lock)})"),
        ("timeout", f"{lock.timeout:g} s"),
        ("stealable", "yes" if lock.stealable else "no"),
        ("depth", str(lock.depth)),
        ("version", str(lock.version)),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        click.echo(f"{name.ljust(width)}  {value}")


@locks_cli.command("release")
@click.argument("resource")
@click.option("--force", is_flag=True, help="Release whoever holds it, stealable or not.")
@click.option("--token", default=None, help="Release with the lock's token.")
@click.option("--owner", default=None, help="Release as this owner id (the lock's holder).")
def release_command(resource: str, force: bool, token: str | None, owner: str | None) -> None:
    """Release the lock on RESOURCE.

    Without --force, the lock is released only with its --token or as its --owner. With
    --force it is released whoever holds it: whoever runs the CLI is trusted as an
    administrator, so non-stealable locks are released too.
    """
    if not (force or token or owner):
        raise click.UsageError("Say how to release: --force, --token TOKEN or --owner ID.")
    with _errors():
        state = _state()
        key = _key(state, resource)
        lock = state.engine.release(
            key,
            token=token,
            owner=owner if owner is not None else UNSET,
            force=force,
            may_steal=lambda _lock: True,
        )
    if lock is None:
        click.echo(f"{key} was not locked.")
    else:
        click.echo(f"Released the lock on {lock.resource} held by {_owner_text(lock)}.")


@locks_cli.command("purge")
def purge_command() -> None:
    """Wipe the secrets of expired locks (expired locks open nothing either way)."""
    with _errors():
        count = _state().engine.purge_expired()
    click.echo(f"Purged {count} expired lock{'s' if count != 1 else ''}.")


@locks_cli.command("create-table")
def create_table_command() -> None:
    """Create the lock tables if missing (also when LOCKING_CREATE_TABLE is off)."""
    state = _state()
    with _errors():
        state.engine.store.create_schema()
    click.echo(f"The lock table {state.config.table_name!r} is ready.")


@locks_cli.command("openapi")
@click.option(
    "--indent", default=2, show_default=True, type=click.IntRange(0, MAX_INDENT),
    help="JSON indentation (spaces per level).",
)
def openapi_command(indent: int) -> None:
    """Print the OpenAPI 3.1 document of the enabled lock endpoints (needs the [openapi]
    extra: apispec and marshmallow)."""
    try:
        from .openapi import build_spec
    except ImportError as error:
        raise click.ClickException(
            f"flask locks openapi needs the [openapi] extra ({error}): "
            "pip install 'flask-locking[openapi]'"
        ) from None
    click.echo(json.dumps(build_spec(current_app), indent=indent, sort_keys=False))
