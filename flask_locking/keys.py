"""One key per resource (SPEC §4a): the only place a URL becomes a lock key.

The guard, every dialect (built-in or the host's) and the Python API call this module, so
no two of them can spell one resource two ways:

* a request is keyed by the rule Flask matched for that very request (its method, its view
  arguments), built back to the rule's canonical URL; a redirecting match (strict slashes,
  ``//``) keys the rule it redirects to, never the raw spelling;
* a path (``<path>/@lock``, a dialect's lock, the Python API) is keyed by the rule that
  would serve a *guarded* method on it, so a GET catch-all or the static route never
  decides; where no rule serves one, the normalised path;
* the dialect that owns the path may rewrite it (:meth:`Dialect.resource_key`);
* apps that route by host or subdomain key into the request's host, and apps mounted under
  a ``SCRIPT_NAME`` into their mount point: ``[acme.example.com]/docs/1``,
  ``[/tenant_a]/docs/1`` (:func:`flask_locking.resources.namespace`).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from flask import current_app, has_request_context, request
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, MapAdapter, RequestRedirect, Rule

from .resources import namespace, normalize, split_namespace

if TYPE_CHECKING:
    from .dialects.base import Dialect
    from .state import LockingState

#: Redirects followed to find the rule a spelling ends at (slash, then ``//``, then alias).
MAX_REDIRECTS = 3

# Whether a map routes by host or subdomain, by map, with the rule count it was computed at.
_HOST_ROUTED: weakref.WeakKeyDictionary[Map, tuple[int, bool]] = weakref.WeakKeyDictionary()


def request_key(state: LockingState) -> tuple[str, Dialect | None]:
    """The guard's key for the current request, and the dialect that owns it."""
    adapter = request_ctx.url_adapter
    path = _request_path(adapter)
    dialect = state.dialect_for(path)
    if dialect is None:
        return path, None
    return _space(adapter) + dialect.resource_key(path), dialect


def path_key(state: LockingState, resource: str) -> tuple[str, bool]:
    """``(key, routed)`` for a path or key: the canonical key (see the module doc), and
    whether the app routes the path at all (for any method). A key that already names its
    namespace (``[...]/...``) is only normalised.

    Raises :class:`~flask_locking.InvalidResource` for what cannot be a key.
    """
    key = normalize(resource)
    if split_namespace(key)[0]:
        return key, True
    adapter = _adapter()
    routed = True
    if adapter is not None:
        methods = sorted(state.config.guarded_methods) or ["GET"]
        key, routed = _canonical(adapter, key, methods)
    dialect = state.dialect_for(key)
    if dialect is not None:
        key = dialect.resource_key(key)
    space = _space(adapter) if adapter is not None else ""
    return normalize(space + key), routed


def resolve(state: LockingState, resource: str) -> str:
    """The canonical key of ``resource`` (a path or a namespaced key)."""
    return path_key(state, resource)[0]


# -- the rule behind a spelling ----------------------------------------------------------


def _request_path(adapter: MapAdapter | None) -> str:
    """The canonical app path of the current request (no namespace)."""
    rule, args = request.url_rule, request.view_args
    if rule is None:
        error = request.routing_exception
        if not isinstance(error, RequestRedirect) or adapter is None:
            return normalize(request.path, strict=False)  # routed nowhere: its own spelling
        target = _redirect_path(adapter, error)
        try:
            rule, args = _match(adapter, target, request.method)
        except HTTPException:
            return normalize(target, strict=False)
    built = _build(rule, args or {})
    return built if built is not None else normalize(request.path, strict=False)


def _canonical(adapter: MapAdapter, path: str, methods: list[str]) -> tuple[str, bool]:
    routed = False
    for method in methods:
        try:
            rule, args = _match(adapter, path, method)
        except NotFound:
            return path, routed
        except HTTPException:  # MethodNotAllowed, a redirect loop: routed, not for this method
            routed = True
            continue
        built = _build(rule, args)
        return (built if built is not None else path), True
    return path, routed


def _match(adapter: MapAdapter, path: str, method: str) -> tuple[Rule, dict[str, Any]]:
    """The rule serving ``method`` on ``path``, following redirects to the rule they name."""
    for _ in range(MAX_REDIRECTS):
        try:
            return adapter.match(path, method=method, return_rule=True)  # type: ignore[return-value]
        except RequestRedirect as redirect:
            path = _redirect_path(adapter, redirect)
    raise MethodNotAllowed()


def _redirect_path(adapter: MapAdapter, redirect: RequestRedirect) -> str:
    """The app path a redirect points to (its URL without the mount point)."""
    path = unquote(urlsplit(redirect.new_url).path)
    script = adapter.script_name.rstrip("/")
    if script and (path == script or path.startswith(script + "/")):
        path = path[len(script) :]
    return path or "/"


def _build(rule: Rule, args: dict[str, Any]) -> str | None:
    """``rule``'s canonical URL for ``args``, as a normalised path; ``None`` when the rule
    cannot build it (a converter's error)."""
    try:
        built = rule.build(args, append_unknown=False)
    except Exception:  # noqa: BLE001 - a host converter's to_url may raise anything
        return None
    if built is None:
        return None
    return normalize(unquote(built[1]), strict=False)


# -- namespaces --------------------------------------------------------------------------


def _adapter() -> MapAdapter | None:
    """The request's URL adapter; outside a request, one bound the way Flask's ``url_for``
    binds outside a request (``SERVER_NAME``, ``APPLICATION_ROOT``)."""
    if has_request_context():
        return request_ctx.url_adapter
    app = current_app
    adapter = app.create_url_adapter(None)
    if adapter is None:
        adapter = app.url_map.bind("", script_name=app.config["APPLICATION_ROOT"])
    return adapter


def _space(adapter: MapAdapter | None) -> str:
    """The namespace prefix of keys reached through ``adapter``: its host when the app
    routes by host or subdomain, and its mount point."""
    if adapter is None:
        return ""
    host = ""
    if _routes_by_host(adapter.map):
        host = adapter.get_host(None).lower()
    return namespace(host + adapter.script_name.rstrip("/"))


def _routes_by_host(url_map: Map) -> bool:
    """True when some rule of ``url_map`` is bound to a host or a subdomain."""
    count = len(url_map._rules)
    cached = _HOST_ROUTED.get(url_map)
    if cached is not None and cached[0] == count:
        return cached[1]
    default = url_map.default_subdomain or ""
    value = url_map.host_matching or any(
        (rule.subdomain or "") != default for rule in url_map.iter_rules()
    )
    _HOST_ROUTED[url_map] = (count, value)
    return value
