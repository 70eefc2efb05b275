"""One key per resource (docs/guard.rst): the only place a URL becomes a lock key.

The guard, every dialect (built-in or the host's) and the Python API call this module, so
no two of them can spell one resource two ways:

* a request is keyed by the rule Flask matched for that very request (its method, its view
  arguments), built back to the rule's canonical URL; a redirecting match (strict slashes,
  ``//``) keys the rule it redirects to, never the raw spelling;
* a path (``<path>/@lock``, a dialect's lock, the Python API) is keyed by the rules that
  would serve the *guarded* methods on it, so a GET catch-all or the static route never
  decides; where no rule serves one, the key the guard gives the writes of the endpoint
  that serves it for reads (another rule of it serving a guarded method), else the
  normalised path; where two guarded methods' rules
  key it differently, it cannot be locked at all (a lock on either key would let the
  other method's writes through);
* the dialect that owns the path may rewrite it (:meth:`Dialect.resource_key`);
* apps that route by host or subdomain key into the request's host, and apps mounted under
  a ``SCRIPT_NAME`` into their mount point: ``[acme.example.com]/docs/1``,
  ``[/tenant_a]/docs/1`` (:func:`flask_locking.resources.namespace`).
  A namespaced key is canonicalised as a request arriving in its namespace; outside a
  request, a host-routed app refuses a bare path (it names no tenant).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

from flask import current_app, has_request_context, request
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, MapAdapter, RequestRedirect, Rule
from werkzeug.test import EnvironBuilder

from .errors import InvalidResource
from .resources import MAX_RESOURCE_LENGTH, ancestors, namespace, normalize, split_namespace

if TYPE_CHECKING:
    from .dialects.base import Dialect
    from .state import LockingState

#: Redirects followed to find the rule a spelling ends at (slash, then ``//``, then alias).
MAX_REDIRECTS = 3

# Whether a map routes by host or subdomain, by map, with the rules version (see
# rules_version) it was computed at.
_HOST_ROUTED: weakref.WeakKeyDictionary[Map, tuple[int, bool]] = weakref.WeakKeyDictionary()

#: The attribute of a URL map that counts the calls of its ``add`` (see rules_version).
_ADDED = "_flask_locking_rules_added"


def rules_version(url_map: Map) -> int:
    """A number that changes whenever a rule is added to ``url_map``, read in constant time.

    The key caches below must start anew when the routes change (a new rule can change a
    path's canonical key), and they are consulted on every guarded request. Counting the
    rules (``len(url_map._rules)``) builds a list of every rule of the app, per request:
    about 40 µs at 300 routes. Instead, the first call wraps this map's ``add`` (every rule
    enters a Werkzeug map through it, Flask's ``add_url_rule`` and blueprints included) in
    one that counts its calls; the count is the version. Rules added before the first call
    need no counting: nothing was cached from them yet."""
    version = url_map.__dict__.get(_ADDED)
    if version is not None:
        return int(version)
    add = url_map.add

    def counting_add(rulefactory: Any) -> None:
        add(rulefactory)
        setattr(url_map, _ADDED, getattr(url_map, _ADDED) + 1)

    counting_add.__doc__ = add.__doc__
    url_map.add = counting_add  # type: ignore[method-assign]
    setattr(url_map, _ADDED, 0)
    return 0

#: Requests' keys and dialects by rule, path, view arguments and adapter binding, per app
#: state, with the dialect count and rules version they were computed at; at most this many per
#: state (and as many :func:`path_key` answers).
MAX_CACHED_RULE_KEYS = 4096
_OWNED_BY_RULE: weakref.WeakKeyDictionary[
    LockingState, tuple[tuple[int, int], dict[tuple[Any, ...], tuple[Rule, RequestKey]]]
] = weakref.WeakKeyDictionary()

#: :func:`path_key`'s answers per app state: ``(generation, url map, {(path, adapter
#: binding): (key, routed)})``, at most :data:`MAX_CACHED_RULE_KEYS` entries.
_PATH_KEYS: weakref.WeakKeyDictionary[
    LockingState, tuple[tuple[int, int], Map, dict[tuple[Any, ...], tuple[ResolvedKey, bool]]]
] = weakref.WeakKeyDictionary()


class RequestKey(NamedTuple):
    """The guard's answer for a request (:func:`request_key`)."""

    #: The canonical key of what the request writes.
    key: str
    #: The dialect that owns it (``None``: nothing guards it).
    dialect: Dialect | None
    #: The ancestors of the other paths of what the request writes (each rule of its
    #: endpoint built back with its arguments) that are not ancestors of :attr:`key`: a
    #: depth-infinity lock on one of them covers the request too. Where the endpoint's
    #: canonical URL (``url_for``'s: an alias rule registered first) lies elsewhere, a task
    #: below a locked job's URL is still below it, whichever spelling writes it.
    above: tuple[str, ...] = ()


def request_key(state: LockingState) -> RequestKey:
    """The guard's key for the current request, the dialect that owns it, and the other
    keys whose depth-infinity lock covers it (see :class:`RequestKey`).

    Kept per app state by the rule the request matched, its method, its path, its view
    arguments and its URL adapter's binding (host, subdomain, ``SCRIPT_NAME``): a request
    seen before is keyed as it was then, without building the rule back again. The path is
    part of the cache key because the view arguments alone do not tell requests apart: a
    ``url_value_preprocessor`` may have popped one (a tenant); the binding, because the
    same path in another host or mount is another tenant's resource."""
    ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
    current, adapter = ctx.request, ctx.url_adapter
    rule = current.url_rule
    if rule is None or adapter is None:  # routed nowhere (or a redirect): not kept
        return _request_key(state, adapter)
    args = current.view_args
    # The method too: one rule may serve several guarded methods, and the key is built by
    # the endpoint's first rule that serves the request's method (see _build).
    cache_key = (
        id(rule), current.method, current.path, tuple(args.items()) if args else (),
        adapter.server_name, adapter.subdomain, adapter.script_name,
    )
    url_map = adapter.map
    # Dialects and rules are only ever added: a count that changed starts the cache anew.
    generation = (len(state.dialects), rules_version(url_map))
    cached = _OWNED_BY_RULE.get(state)
    if cached is None or cached[0] != generation:
        cached = _OWNED_BY_RULE[state] = (generation, {})
    entries = cached[1]
    try:
        entry = entries.get(cache_key)
    except TypeError:  # a host converter's unhashable value
        return _request_key(state, adapter)
    if entry is not None and entry[0] is rule:  # (an id is reused only after its rule died)
        return entry[1]
    answer = _request_key(state, adapter)
    if len(answer[0]) <= MAX_RESOURCE_LENGTH:  # a longer path cannot be locked: not kept
        if len(entries) >= MAX_CACHED_RULE_KEYS:
            entries.clear()
        entries[cache_key] = (rule, answer)
    return answer


def _request_key(state: LockingState, adapter: MapAdapter | None) -> RequestKey:
    """:func:`request_key`, computed."""
    canonical, spellings = _request_path(adapter)
    path, dialect = _owned_path(state, canonical)
    if dialect is None:
        return RequestKey(path, None)
    space = _space(adapter)
    key = space + path
    covered = {key, *ancestors(key)}
    above: dict[str, None] = {}
    # Only a request some rule serves reaches a view (a 404, a 405 or a redirect writes
    # nothing): resolving the ancestors of any other path is a URL match each, for nothing.
    aliased = adapter is not None and request.url_rule is not None and _has_aliases(adapter.map)
    for own in (path, *(_owned(state, spelled) for spelled in spellings)):
        # The ancestors of every spelling, each also as its own <ancestor>/@lock keys it (a
        # job's URL whose endpoint builds another URL first): a depth-infinity lock on any
        # of them covers the request.
        above.update(dict.fromkeys(k for k in ancestors(space + own) if k not in covered))
        if aliased:
            above.update(dict.fromkeys(k for k in _ancestor_keys(state, own) if k not in covered))
    return RequestKey(key, dialect, tuple(above))


#: Per URL map: (rules version, whether an endpoint has several rules).
_ALIASED: weakref.WeakKeyDictionary[Map, tuple[int, bool]] = weakref.WeakKeyDictionary()


def _has_aliases(url_map: Map) -> bool:
    """Whether some endpoint of ``url_map`` has several rules (so a path can key as another
    spelling, its endpoint's first rule). Without one, an ancestor of a canonical key keys
    as itself, and the guard need not resolve the ancestors (each a URL match)."""
    version = rules_version(url_map)
    known = _ALIASED.get(url_map)
    if known is not None and known[0] == version:
        return known[1]
    endpoints = [rule.endpoint for rule in url_map.iter_rules()]
    aliased = len(set(endpoints)) < len(endpoints)
    _ALIASED[url_map] = (version, aliased)
    return aliased


def _ancestor_keys(state: LockingState, path: str) -> Iterator[str]:
    """The keys that ``<ancestor>/@lock`` gives the ancestors of ``path`` (no namespace;
    the request's own is added), where the app routes them: the key a lock on an ancestor
    was taken under. (Each is kept by :func:`path_key`'s cache.)"""
    for ancestor in ancestors(path):
        try:
            yield str(path_key(state, ancestor)[0])
        except InvalidResource:  # not a key, or ambiguous: nothing can be locked on it
            continue


def _owned_path(state: LockingState, path: str) -> tuple[str, Dialect | None]:
    """``path`` as its dialect keys it (no namespace), and that dialect."""
    dialect = state.dialect_for(path)
    return (path, None) if dialect is None else (dialect.resource_key(path), dialect)


class ResolvedKey(str):
    """A key :func:`path_key` already resolved: :meth:`Dialect.lock_key` takes it as is
    instead of resolving it a second time."""

    __slots__ = ()


def path_key(state: LockingState, resource: str) -> tuple[ResolvedKey, bool]:
    """``(key, routed)`` for a path or key: the canonical key (see the module doc), and
    whether the app routes the path at all (for any method). A namespaced key
    (``[host/mount]/path``) is canonicalised as a request arriving in that namespace would be.

    Raises :class:`~flask_locking.InvalidResource` for what cannot be a key, and for a path
    whose guarded methods are served by rules that key it differently (a lock on one key
    would not protect the others' writes).

    The answer for a path (not a namespaced key) is kept per app state, by the path and
    everything of the URL adapter that matching and the namespace read: a ``@lock`` request
    for a path seen before is answered without matching its rules again.
    """
    if (
        not isinstance(resource, str)
        or resource.startswith("[")  # a namespaced key: its own adapter, not cached
        or not has_request_context()
        or (adapter := request_ctx.url_adapter) is None
    ):
        return _path_key(state, resource)
    url_map = adapter.map
    # Dialects and rules are only ever added: a count that changed starts the cache anew.
    generation = (len(state.dialects), rules_version(url_map))
    cache_key = (
        resource, adapter.server_name, adapter.subdomain, adapter.script_name,
        adapter.url_scheme,
    )
    cached = _PATH_KEYS.get(state)
    if cached is None or cached[0] != generation or cached[1] is not url_map:
        cached = _PATH_KEYS[state] = (generation, url_map, {})
    entries = cached[2]
    answer = entries.get(cache_key)
    if answer is None:
        answer = _path_key(state, resource)  # raises for what cannot be a key
        if len(resource) <= MAX_RESOURCE_LENGTH:  # a longer path cannot be locked: not kept
            if len(entries) >= MAX_CACHED_RULE_KEYS:
                entries.clear()
            entries[cache_key] = answer
    return answer


def _path_key(state: LockingState, resource: str) -> tuple[ResolvedKey, bool]:
    """:func:`path_key`, computed."""
    key = normalize(resource)
    space, path = split_namespace(key)
    adapter = _namespace_adapter(space) if space else _adapter()
    routed = True
    if adapter is not None:
        path, routed = _canonical(state, adapter, path)
    else:
        path = _owned(state, path)
    if not space and adapter is not None:
        space = _space(adapter)
    return ResolvedKey(normalize(space + path)), routed


def resolve(state: LockingState, resource: str) -> str:
    """The canonical key of ``resource`` (a path or a namespaced key), a plain ``str``."""
    return str(path_key(state, resource)[0])


# -- the rule behind a spelling ----------------------------------------------------------


def _request_path(adapter: MapAdapter | None) -> tuple[str, tuple[str, ...]]:
    """The canonical app path of the current request (no namespace), and the other paths
    its endpoint's rules build for the same arguments (the one it matched among them)."""
    rule, args = request.url_rule, request.view_args
    if rule is None:
        error = request.routing_exception
        if not isinstance(error, RequestRedirect) or adapter is None:
            return normalize(request.path, strict=False), ()  # routed nowhere: as spelled
        target = _redirect_path(adapter, error)
        try:
            rule, args = _match(adapter, target, request.method)
        except HTTPException:
            return normalize(target, strict=False), ()
        args = _preprocessed(rule, args)
    elif adapter is not None and current_app.url_value_preprocessors:
        # The view arguments are what the app's url_value_preprocessors left: one may have
        # popped an argument (a tenant, a language: the rule could not be built from the
        # rest) or rewritten one in place. Key what the view gets over what the rule
        # matched, as <path>/@lock keys it (see _preprocessed).
        try:
            matched = adapter.match(return_rule=True)[1]
        except HTTPException:
            matched = None
        if matched is not None:
            args = _as_preprocessed(matched, args or {})
    built = _build(rule, args or {}, request.method)
    if built is None:
        return normalize(request.path, strict=False), ()
    return built, tuple(path for path in _spellings(rule, args or {}) if path != built)


def _canonical(state: LockingState, adapter: MapAdapter, path: str) -> tuple[str, bool]:
    """The key every guarded method's rule gives ``path`` (as :func:`request_key` would key
    that request), and whether any rule routes it. Where no guarded method is routed, the
    key its endpoint's writes get, if some rule of that endpoint serves a guarded method
    (:func:`_read_endpoint_key`), else the normalised path (an app guarding no method at
    all: the ``GET`` rule)."""
    methods = sorted(state.config.guarded_methods) or ["GET"]
    keys, routed = _keys_by_rule(state, adapter, path, methods)
    if not keys:  # no guarded method served here: keyed as its endpoint's writes are
        key, read = _read_endpoint_key(state, adapter, path)
        return key, routed or read
    return _only_key(
        keys,
        lambda rules: f"{path} cannot be locked: the guarded methods' rules key it "
        f"differently ({rules}), so a lock on one key would not protect the other writes. "
        "Serve every guarded method of a resource through rules whose canonical URLs "
        "agree (the same converters), or lock a spelling on which they agree.",
    ), True


def _only_key(keys: dict[str, list[str]], message: Callable[[str], str]) -> str:
    """The one key of ``keys`` (``{key: ["METHOD rule", ...]}``); several: refused with
    ``message(rules)``, ``rules`` naming which rule gives which key."""
    if len(keys) > 1:
        rules = "; ".join(
            f"{', '.join(served)} → {key}" for key, served in sorted(keys.items())
        )
        raise InvalidResource(message(rules))
    return next(iter(keys))


def _matched(
    adapter: MapAdapter, path: str, methods: Iterable[str]
) -> tuple[list[tuple[str, Rule, dict[str, Any]]], bool]:
    """The rule (and its arguments) each of ``methods`` matches on ``path``, and whether some
    rule answered other than 404 for one of them.

    A 404 for one method does not mean no rule routes the path: Werkzeug answers 404, not
    405, for a method a trailing-slash rule does not serve when the path lacks the slash
    (``PATCH /ro/7`` beside ``GET /ro/<int:id>/``)."""
    found: list[tuple[str, Rule, dict[str, Any]]] = []
    routed = False
    for method in methods:
        try:
            rule, args = _match(adapter, path, method)
        except NotFound:
            continue
        except HTTPException:  # MethodNotAllowed, a redirect loop: routed, not for this method
            routed = True
            continue
        routed = True
        found.append((method, rule, args))
    return found, routed


def _keys_by_rule(
    state: LockingState, adapter: MapAdapter, path: str, methods: list[str]
) -> tuple[dict[str, list[str]], bool]:
    """``{key: ["METHOD rule", ...]}`` for the ``methods`` a rule serves on ``path``, and
    whether some rule routes it (:func:`_matched`)."""
    keys: dict[str, list[str]] = {}
    found, routed = _matched(adapter, path, methods)
    for method, rule, args in found:
        built = _build(rule, _preprocessed(rule, args), method)
        key = _owned(state, built if built is not None else path)
        keys.setdefault(key, []).append(f"{method} {rule.rule}")
    return keys, routed


#: The methods some rule of a map serves, by map, with the rules version they were
#: computed at (see :func:`_read_endpoint_key`).
_MAP_METHODS: weakref.WeakKeyDictionary[Map, tuple[int, frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)


def _map_methods(url_map: Map) -> frozenset[str]:
    """Every method some rule of ``url_map`` names (kept until a rule is added)."""
    version = rules_version(url_map)
    cached = _MAP_METHODS.get(url_map)
    if cached is not None and cached[0] == version:
        return cached[1]
    methods = frozenset(
        method for rule in url_map.iter_rules() for method in (rule.methods or ())
    )
    _MAP_METHODS[url_map] = (version, methods)
    return methods


def _read_endpoint_key(state: LockingState, adapter: MapAdapter, path: str) -> tuple[str, bool]:
    """The key of ``path``, which no rule serves for a guarded method, and whether a rule
    routes it for another method.

    Where a rule serving it for another method (``GET /articles/<int:id>``) belongs to an
    endpoint that also has a rule serving a guarded method and taking exactly the same
    arguments (``PATCH /edit/<int:id>``), the writes to what ``path`` names arrive through
    that other rule and the guard keys them by endpoint (:func:`_build`): ``path`` is keyed
    by the same builder, so ``/articles/07`` is ``/articles/7`` on both sides. Otherwise
    (a ``GET`` catch-all, the static route, an endpoint nothing guarded serves), the
    normalised path. Rules of two such endpoints that key ``path`` differently: refused,
    as in :func:`_canonical`.

    Each method some rule of the app serves is matched (Werkzeug's ``allowed_methods``
    answers none for a spelling that redirects or lacks a trailing slash); ``HEAD`` and
    ``OPTIONS`` come with the rules' own methods. Only for a path no guarded method is
    served on, and kept by :func:`path_key`."""
    guarded = state.config.guarded_methods
    keys: dict[str, list[str]] = {}
    seen: set[int] = set()
    methods = _map_methods(adapter.map) - guarded - {"HEAD", "OPTIONS"}
    found, routed = _matched(adapter, path, sorted(methods))
    for method, rule, args in found:
        if id(rule) in seen:
            continue
        seen.add(id(rule))
        args = _preprocessed(rule, args)
        if not _written_by_endpoint(rule, args, guarded):
            continue
        built = _build(rule, args, method)
        if built is not None:
            keys.setdefault(_owned(state, built), []).append(f"{method} {rule.rule}")
    if not keys:
        return _owned(state, path), routed
    return _only_key(
        keys,
        lambda rules: f"{path} cannot be locked: it is served by rules of endpoints whose "
        f"writes key it differently ({rules}), so a lock on one key would not protect the "
        "other writes.",
    ), True


def _endpoint_rules(rule: Rule) -> Iterable[Rule]:
    """The rules of ``rule``'s endpoint, in the order they were added (``url_for``'s)."""
    if rule.map is None:
        return ()
    try:
        return rule.map.iter_rules(rule.endpoint)
    except KeyError:  # a rule not (yet) added to its map
        return ()


def _written_by_endpoint(rule: Rule, args: dict[str, Any], guarded: frozenset[str]) -> bool:
    """Whether ``rule``'s endpoint has a rule serving a guarded method that takes exactly
    ``args`` (so the guard keys the writes to them by the endpoint)."""
    names = args.keys()
    for candidate in _endpoint_rules(rule):
        if (
            (candidate.methods is None or not guarded.isdisjoint(candidate.methods))
            and candidate.arguments == names
            and candidate.suitable_for(args)
        ):
            return True
    return False


def _owned(state: LockingState, path: str) -> str:
    """``path`` as the dialect that owns it writes its key (no namespace)."""
    return _owned_path(state, path)[0]


def _match(adapter: MapAdapter, path: str, method: str) -> tuple[Rule, dict[str, Any]]:
    """The rule serving ``method`` on ``path``, following redirects to the rule they name."""
    for _ in range(MAX_REDIRECTS):
        try:
            return adapter.match(path, method=method, return_rule=True)  # type: ignore[return-value]
        except RequestRedirect as redirect:
            path = _redirect_path(adapter, redirect)
    raise MethodNotAllowed()


def _preprocessed(rule: Rule, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments ``rule`` matched, as the app's ``url_value_preprocessors`` for its
    endpoint (the app's, then its blueprints', as Flask runs them) leave them for the view
    (see :func:`_as_preprocessed`). A preprocessor that raises (an ``abort`` for an
    unknown tenant) leaves the matched arguments."""
    preprocessors = current_app.url_value_preprocessors
    if not preprocessors:
        return args
    endpoint = rule.endpoint
    parts = endpoint.split(".")[:-1] if isinstance(endpoint, str) else []
    names = [None, *(".".join(parts[: i + 1]) for i in range(len(parts)))]
    values = dict(args)
    try:
        for name in names:
            for preprocess in preprocessors.get(name, ()):
                preprocess(endpoint, values)
    except Exception:  # noqa: BLE001 - the host's code: the matched arguments stand
        return args
    return _as_preprocessed(args, values)


def _as_preprocessed(matched: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``matched`` arguments, each replaced by the value a preprocessor left in
    ``values`` when it kept its type: a rewrite (``slug.lower()``) keys by what the view
    gets; an argument popped (a tenant, a language), or replaced by an object of another
    type (a model loaded for an id, which no rule builds back stably), keys by what was
    matched. Arguments a preprocessor added are no rule's: left out."""
    return {
        name: (
            values[name]
            if name in values and type(values[name]) is type(value)
            else value
        )
        for name, value in matched.items()
    }


def _redirect_path(adapter: MapAdapter, redirect: RequestRedirect) -> str:
    """The app path a redirect points to (its URL without the mount point)."""
    path = unquote(urlsplit(redirect.new_url).path)
    script = adapter.script_name.rstrip("/")
    if script and (path == script or path.startswith(script + "/")):
        path = path[len(script) :]
    return path or "/"


def _build(rule: Rule, args: dict[str, Any], method: str) -> str | None:
    """The canonical URL of what ``rule`` matched with ``args`` for ``method``, as a
    normalised path; ``None`` when it cannot be built (a converter's error).

    Canonical as ``url_for`` builds it: by the rule's **endpoint**, so that two rules that
    lead one view to the same arguments (``/docs/<id>`` and ``/files/<id>`` on one
    endpoint) give one key, whichever spelling a write arrives by. The rule used is the
    first of the endpoint's rules, in Werkzeug's build order, that takes exactly these
    arguments (one that ignored an argument would merge two resources into one key),
    whatever methods it serves, as ``url_for`` picks it: a rule chosen per method would
    key one resource twice (``GET /docs/<id>`` beside ``PATCH /docs/<id>/edit``: a lock on
    ``/docs/1`` would let ``PATCH /docs/1/edit`` through); else the matched rule itself.
    (``method`` is the request's; the choice does not depend on it.)"""
    names = args.keys()
    for candidate in _endpoint_rules(rule):
        if candidate is rule or (
            candidate.arguments == names and candidate.suitable_for(args)
        ):
            built = _build_with(candidate, args)
            if built is not None:
                return built
            if candidate is rule:
                return None
    return _build_with(rule, args)


def _spellings(rule: Rule, args: dict[str, Any]) -> list[str]:
    """Every path ``rule``'s endpoint reaches with exactly ``args``: ``rule``'s own, and
    each other rule's of the endpoint taking these arguments (as :func:`_build` picks
    them), each built back as a normalised path."""
    rules = tuple(_endpoint_rules(rule))
    if len(rules) <= 1:  # (most endpoints) one rule: one spelling, the built one
        return []
    names = args.keys()
    found = [
        built
        for candidate in (rule, *rules)
        if candidate is rule or (candidate.arguments == names and candidate.suitable_for(args))
        if (built := _build_with(candidate, args)) is not None
    ]
    return list(dict.fromkeys(found))


def _build_with(rule: Rule, args: dict[str, Any]) -> str | None:
    """``rule``'s URL for ``args``, as a normalised path (``None``: it cannot build it).

    A converter without its own ``to_url`` spells a value as ``str(value)``: for an object
    loaded for the URL (a model), its memory address, another text at every request. Such
    a URL names no resource twice: ``None``, so the URL that was matched keys it."""
    try:
        built = rule.build(args, append_unknown=False)
    except Exception:  # noqa: BLE001 - a host converter's to_url may raise anything
        return None
    if built is None:
        return None
    path = unquote(built[1])
    if any(_spelled_by_address(value, path) for value in args.values()):
        return None
    return normalize(path, strict=False)


def _spelled_by_address(value: Any, path: str) -> bool:
    """Whether ``path`` spells ``value`` by its default text, which is its memory address."""
    kind: Any = type(value)  # (its methods, not bound ones: compared with object's)
    return (
        kind.__str__ is object.__str__
        and kind.__repr__ is object.__repr__
        and object.__repr__(value) in path
    )


# -- namespaces --------------------------------------------------------------------------


def _adapter() -> MapAdapter | None:
    """The request's URL adapter; outside a request, one bound the way Flask's ``url_for``
    binds outside a request (``SERVER_NAME``, ``APPLICATION_ROOT``).

    Outside a request, an app that routes by host or subdomain has no namespace to key a
    bare path into (any guess would be a key no request is checked against): refused."""
    if has_request_context():
        return request_ctx.url_adapter
    app = current_app
    if _routes_by_host(app.url_map):
        raise InvalidResource(
            "This app routes by host or subdomain, so a path alone names no tenant's "
            "resource outside a request: pass a namespaced key such as "
            "'[acme.example.com]/docs/1', or call inside the tenant's request."
        )
    adapter = app.create_url_adapter(None)
    if adapter is None:
        adapter = app.url_map.bind("", script_name=app.config["APPLICATION_ROOT"])
    return adapter


def _namespace_adapter(space: str) -> MapAdapter:
    """A URL adapter bound as for a request arriving in the namespace ``space``
    (``[host/mount]``, ``[host]`` or ``[/mount]``): Flask's own request binding, so a
    namespaced key is canonicalised by the rules that serve that host."""
    app = current_app
    text = space[1:-1].replace("%5D", "]").replace("%25", "%")
    host, slash, script = text.partition("/")
    script = (slash + script).rstrip("/")
    host = host or app.config["SERVER_NAME"] or "localhost"
    try:
        environ = EnvironBuilder(path="/", base_url=f"http://{host}{quote(script)}/").get_environ()
        adapter = app.create_url_adapter(app.request_class(environ))
    except Exception as error:  # noqa: BLE001 - a host Werkzeug refuses (SecurityError, ...)
        raise InvalidResource(
            f"The namespace {space} is not a host a request can arrive at: {error}"
        ) from None
    assert adapter is not None  # Flask always binds a request
    return adapter


def request_namespace() -> str:
    """The namespace prefix of the keys the current request reaches (``""``: the default
    namespace): the one :func:`request_key` and :func:`path_key` key its paths into."""
    return _space(request_ctx.url_adapter)


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
    count = rules_version(url_map)
    cached = _HOST_ROUTED.get(url_map)
    if cached is not None and cached[0] == count:
        return cached[1]
    default = url_map.default_subdomain or ""
    value = url_map.host_matching or any(
        (rule.subdomain or "") != default for rule in url_map.iter_rules()
    )
    _HOST_ROUTED[url_map] = (count, value)
    return value
