"""The lock listing API at ``LOCKING_LOCKS_URL`` (default ``/@locks``).

- ``GET /@locks?prefix=&owner=&dialect=&limit=&cursor=`` → ``{"items": [...], "next": ...}``:
  live locks in resource order, each as the lock JSON without its token, only those the
  authorizer lets the caller ``view``.
- ``DELETE /@locks`` with ``{"resources": [...], "force": bool}`` → ``{"released": [...],
  "not_locked": [...], "refused": [{"resource", "status", "message"}]}``: each resource
  keyed and released as ``DELETE <path>/@lock`` would (``unlock``, and ``steal`` for
  another's non-stealable lock).
- ``GET /@locks/events?prefix=&owner=&dialect=`` → the Server-Sent Events of those locks.

Each request sees and acts on the locks of its own namespace only (its host when the app
routes by host, its ``SCRIPT_NAME`` mount; see :mod:`.keys`): paths and ``prefix`` are
keyed into it, and a key of another namespace is refused. Errors use the content dialect's
format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from .errors import (
    AuthenticationRequired,
    InvalidInput,
    InvalidResource,
    LockingError,
    LockPermissionDenied,
    http_status,
)
from .events.model import LockEvent
from .events.stream import event_stream
from .identity import current_identity, is_allowed
from .keys import request_namespace, resolve
from .lock import Lock, Owner, owner_key
from .resources import is_within, normalize, split_namespace

if TYPE_CHECKING:
    from .dialects.base import Dialect
    from .state import LockingState

#: Most resources one bulk release may name.
MAX_BULK = 1000


@dataclass(frozen=True)
class LockFilter:
    """The ``prefix``, ``owner`` and ``dialect`` query arguments, parsed."""

    #: The key the selected locks are on or below, in the request's namespace (its root
    #: ``[namespace]/`` without a ``prefix``).
    prefix: str
    owner_key: str | None
    dialect: str | None

    def matches_key(self, state: LockingState, resource: str) -> bool:
        """The dialect test (prefix and owner are applied in the query or by the caller)."""
        if self.dialect is None:
            return True
        dialect = state.dialect_for(split_namespace(resource)[1])  # dialects own paths
        return dialect is not None and dialect.name == self.dialect

    def matches_event(self, state: LockingState, event: LockEvent) -> bool:
        """True when ``event`` concerns a lock this filter selects."""
        if not is_within(event.resource, self.prefix):
            return False
        if self.owner_key is not None and owner_key(event.lock.owner) != self.owner_key:
            return False
        return self.matches_key(state, event.resource)


def refuses_anonymous(
    state: LockingState, resource: str, action: str, identity: Owner | None
) -> bool:
    """True when ``identity`` is anonymous and the dialect owning ``resource`` refuses
    ``action`` to anonymous callers at its own endpoints (reference-data locks; ``@lock``
    writes in Plone compatibility): the listing must not do for them what those refuse."""
    if identity is not None:
        return False
    dialect = state.dialect_for(split_namespace(resource)[1])  # dialects own paths
    return dialect is not None and dialect.refuses_anonymous(action)


def may_view(state: LockingState, resource: str, identity: Owner | None) -> bool:
    """Whether ``identity`` may see the lock on ``resource`` in a listing or a stream."""
    return not refuses_anonymous(state, resource, "view", identity) and is_allowed(
        state, "view", resource, identity
    )


def single_arguments(*names: str) -> None:
    """400 when one of the query arguments ``names`` is given more than once (which one
    would count is a guess a client should not have to make)."""
    for name in names:
        if len(request.args.getlist(name)) > 1:
            raise InvalidInput(f"The query argument {name!r} may be given only once.")


def parse_filter(state: LockingState, identity: Owner | None) -> LockFilter:
    """Read ``prefix``, ``owner`` (an id, or ``me``) and ``dialect`` from the query."""
    single_arguments("prefix", "owner", "dialect", "limit", "cursor", "last_event_id")
    args = request.args
    prefix = args.get("prefix")
    key = parse_prefix(prefix) if prefix else None
    owner = args.get("owner")
    wanted: str | None = None
    if owner == "me":
        wanted = owner_key(identity)
    elif owner:
        wanted = owner_key(Owner(id=owner))
    dialect = args.get("dialect")
    name = None
    if dialect is not None:
        names = dialect_names(state)
        name = names.get(dialect)
        if name is None:
            raise InvalidInput(
                f"dialect must be one of {', '.join(sorted(names))}, not {dialect[:40]!r}."
            )
    # Without a prefix: the namespace's root (not keyed as a path: no route decides it).
    try:
        scope = own_key(state, key) if key else request_namespace() + "/"
    except InvalidResource as error:
        raise InvalidInput(f"prefix can match no resource here: {error}") from error
    return LockFilter(prefix=scope, owner_key=wanted, dialect=name)


def own_key(state: LockingState, resource: str) -> str:
    """The key of ``resource`` in the current request's namespace, as ``<resource>/@lock``
    would key it there (canonical by the rule serving a guarded method).

    ``resource`` is a path, or a key of the request's own namespace as the listing shows it
    (``[/tenant_a]/docs/1`` through ``/tenant_a/@locks``). A key of another namespace raises
    :class:`~flask_locking.InvalidResource`: a tenant can neither name nor act on another
    tenant's locks."""
    space = request_namespace()
    given, path = split_namespace(resource)
    if given and given != space:
        here = f"this request's namespace is {space}" if space else "this request has none"
        raise InvalidResource(
            f"{resource[:80]} is a key of the namespace {given[:60]}, and {here}: name "
            f"resources by their path here (e.g. {path[:60]})."
        )
    return resolve(state, path)


def parse_prefix(prefix: str) -> str:
    """The key ``prefix`` names: exactly the texts a resource key can lie within are
    accepted (what :func:`~flask_locking.resources.normalize` makes a key of, a segment
    ending in a dot included); the rest could match no lock and are a 400."""
    try:
        return normalize(prefix)
    except InvalidResource as error:
        raise InvalidInput(f"prefix can match no resource: {error}") from error


def dialect_names(state: LockingState) -> dict[str, str]:
    """The ``dialect`` filter values (``content``, ``jobs``, ``reference``, and the names
    of the host's own dialects) → the dialect's blueprint name."""
    found = list(state.dialects)
    if state.content_dialect is not None:
        found.append(state.content_dialect)
    return {d.name.removeprefix("locking_"): d.name for d in found}


def parse_cursor(cursor: str) -> str:
    """The key a listing continues after (the ``next`` of the previous page is the last
    key it showed; any string works as a starting point)."""
    if "\x00" in cursor or len(cursor) > 1024:
        raise InvalidInput("cursor must be a resource key of at most 1024 characters.")
    return cursor


def _limit(state: LockingState) -> int:
    default = state.events_settings.page_size
    raw = request.args.get("limit")
    if raw is None:
        return default
    most = default * 10
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw[:6]) <= most or len(raw) > 6:
        raise InvalidInput(f"limit must be a whole number from 1 to {most}, not {raw[:40]!r}.")
    return int(raw)


#: Methods the listing and its stream answer with a 405 (when they do not serve them).
OTHER_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class LocksEndpoint:
    """The blueprint at ``LOCKING_LOCKS_URL``."""

    name = "locking_locks"

    def __init__(self, state: LockingState, url: str, dialect: Dialect) -> None:
        self.state = state
        self.url = url
        self.dialect = dialect  # whose error format and error mapping this API uses

    def create_blueprint(self) -> Blueprint:
        """``GET``/``DELETE <url>`` and ``GET <url>/events``."""
        bp = Blueprint(self.name, __name__)
        wrap: Callable[..., Any] = self.dialect.endpoint
        # Every other method gets a 405 in the dialect's format (not Werkzeug's HTML page),
        # and OPTIONS names only the methods served. (A method no rule routes, such as
        # TRACE, is sent to the PUT rule by the guard's hook: see guard.refuse_method.)
        for rule, name, served in (
            (self.url, "refuse", ("GET", "DELETE")),
            (f"{self.url}/events", "events_refuse", ("GET",)),
        ):
            bp.add_url_rule(
                rule, name, wrap(partial(self.refuse_method, served)),
                provide_automatic_options=False,
                methods=[m for m in (*OTHER_METHODS, "OPTIONS") if m not in served],
            )
        bp.add_url_rule(self.url, "list", wrap(self.list_locks), methods=["GET"],
                        provide_automatic_options=False)
        bp.add_url_rule(self.url, "release", wrap(self.release_locks), methods=["DELETE"],
                        provide_automatic_options=False)
        bp.add_url_rule(f"{self.url}/events", "events", wrap(self.events), methods=["GET"],
                        provide_automatic_options=False)
        return bp

    def refuse_method(self, served: tuple[str, ...]) -> Response:
        """OPTIONS, or a 405, for a method the rule (which serves ``served``) does not."""
        if request.method == "OPTIONS":
            return Response(status=200, headers={"Allow": ", ".join((*served, "HEAD", "OPTIONS"))})
        return self.dialect.error(
            405, f"{request.method} is not allowed here; use {' or '.join(served)}.",
            headers={"Allow": ", ".join(served)},
        )

    def list_locks(self) -> Response:
        """One page of live locks the caller may view."""
        state = self.state
        identity = current_identity(state)
        filters = parse_filter(state, identity)
        limit = _limit(state)
        cursor = request.args.get("cursor")
        after = parse_cursor(cursor) if cursor else None
        lock_engine = state.engine
        items: list[Lock] = []
        # Rows the dialect filter or the authorizer drop are skipped: read on until the
        # page is full or the locks run out. One row more than a page tells "there is more".
        while True:
            batch = lock_engine.store.live_page(
                prefix=filters.prefix, after=after, owner_key=filters.owner_key,
                limit=limit + 1,
            )
            for row in batch:
                # Below the root of the default namespace the store also has the keys of
                # every other namespace; they all sort after its own ("[" > "/").
                if not is_within(row.resource, filters.prefix):
                    return _page(items, None)
                if len(items) == limit:
                    return _page(items, after)
                after = row.resource
                if filters.matches_key(state, row.resource) and may_view(
                    state, row.resource, identity
                ):
                    items.append(lock_engine.to_lock(row))
            if len(batch) <= limit:
                return _page(items, None)

    def release_locks(self) -> Response:
        """Release each named resource as its holder, or steal with ``force``."""
        state = self.state
        identity = current_identity(state)
        fields = self.dialect.body(resources=_resource_list, force=_boolean_force)
        if "resources" not in fields:
            raise InvalidInput('The body needs "resources": a list of resource keys.')
        released: list[str] = []
        not_locked: list[str] = []
        refused: list[dict[str, Any]] = []
        seen: set[str] = set()
        for raw in fields["resources"]:
            try:
                key = own_key(state, raw)
                if key in seen:  # another spelling of a key already answered
                    continue
                seen.add(key)
                if refuses_anonymous(state, key, "unlock", identity):
                    raise AuthenticationRequired(f"Log in to unlock {key}.")
                if not is_allowed(state, "unlock", key, identity):
                    raise LockPermissionDenied(f"You may not unlock {key}.", "unlock", key)
                ended = state.engine.release(
                    key, owner=identity, force=fields.get("force", False),
                    may_steal=lambda lock: is_allowed(state, "steal", lock.resource, identity),
                )
                (released if ended is not None else not_locked).append(key)
            except LockingError as error:
                refused.append({"resource": raw, "status": _status(error), "message": str(error)})
        return jsonify(released=released, not_locked=not_locked, refused=refused)

    def events(self) -> Response:
        """The events of every lock the filters select (all, without filters)."""
        state = self.state
        identity = current_identity(state)
        filters = parse_filter(state, identity)

        def match(event: LockEvent) -> bool:
            return filters.matches_event(state, event) and not refuses_anonymous(
                state, event.resource, "view", identity
            )

        return event_stream(state, self.dialect, match, identity)


def _page(items: list[Lock], after: str | None) -> Response:
    return jsonify(
        items=[lock.to_json() for lock in items],
        next=after,
    )


def _status(error: LockingError) -> int:
    return http_status(error) or 400


def _resource_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > MAX_BULK:
        raise InvalidInput(f'"resources" must be a list of 1 to {MAX_BULK} resource keys.')
    if not all(isinstance(item, str) for item in value):
        raise InvalidInput('Every item of "resources" must be a string (a resource key).')
    return list(dict.fromkeys(value))


def _boolean_force(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput('"force" must be true or false.')
    return value
