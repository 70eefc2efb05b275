"""The mutation list: hand-made faults in the core, each a plain text substitution.

A mutant names its file, a snippet that must occur exactly once in it, and what replaces
the snippet. Snippets are patterns, not line numbers, so the list survives edits elsewhere
in a file; a snippet that no longer occurs (or occurs twice) is reported as *stale* instead
of silently mutating the wrong code. A mutant marked ``equivalent`` changes no observable
behaviour; the reason says why, and docs/contributing.rst repeats it. A mutant marked
``needs`` plants a fault only that backend can show; a SQLite-only run skips it.
"""

from __future__ import annotations

from typing import NamedTuple


class Mutant(NamedTuple):
    id: str
    file: str  # path from the project root
    find: str
    replace: str
    what: str
    equivalent: str | None = None
    #: The server backends on which alone the fault shows (run with ``--all-backends``).
    needs: str | None = None


GUARD = "flask_locking/guard.py"
ENGINE = "flask_locking/engine.py"
LOCK = "flask_locking/lock.py"
TOKENS = "flask_locking/tokens.py"
RESOURCES = "flask_locking/resources.py"
SQL = "flask_locking/store/sql.py"
SQLITE = "flask_locking/store/sqlite.py"
UPSERT = "flask_locking/store/upsert.py"
KEYS = "flask_locking/keys.py"
VERIFIED = "flask_locking/verified.py"
IDENTITY = "flask_locking/identity.py"

M = Mutant

MUTANTS: list[Mutant] = [
    # -- guard.py --------------------------------------------------------------------------
    M(
        "guard-method",
        GUARD,
        "if current.method not in config.guarded_methods or",
        "if current.method in config.guarded_methods or",
        "guard the unguarded methods instead",
    ),
    M(
        "guard-enabled",
        GUARD,
        " or not config.guard_enabled:",
        ":",
        "ignore LOCKING_GUARD_ENABLED=False",
    ),
    M(
        "guard-exempt",
        GUARD,
        "    if _is_exempt(state, app, current):\n        return None\n",
        "",
        "no exemptions at all",
    ),
    M(
        "guard-normalize",
        KEYS,
        "return normalize(request.path, strict=False), ()  # routed nowhere",
        "return request.path, ()  # routed nowhere",
        "check the raw path of an unrouted request (no dot-segment/slash normalisation)",
    ),
    M(
        "guard-resource-key",
        KEYS,
        "else (dialect.resource_key(path), dialect)",
        "else (path, dialect)",
        "skip the dialect's canonical key (/jobs/007 vs /jobs/7)",
    ),
    M(
        "guard-fail-open",
        GUARD,
        "if not state.config.guard_fail_open:",
        "if state.config.guard_fail_open:",
        "fail open/closed swapped when the store is down",
    ),
    M(
        "guard-stale-unlocked",
        ENGINE,
        "if token is None or ignore_unheld_token:",
        "if True:",
        "a token on an unlocked resource passes instead of being refused as stale",
    ),
    M(
        "guard-no-token",
        ENGINE,
        "        if token is None:\n            return WriteDecision(Verdict.LOCKED",
        "        if False:\n            return WriteDecision(Verdict.LOCKED",
        "a write without a token on a locked resource passes",
    ),
    M(
        "guard-wrong-token",
        ENGINE,
        "unopened = next((r for r in rows if not self.token_matches(r, token)), None)",
        "unopened = None",
        "any token opens the lock",
    ),
    M(
        "guard-current-lock",
        GUARD,
        "    remember_verified(decision)\n",
        "",
        "current_lock is not set for a verified write",
    ),
    M(
        "guard-unlock-on-save-off",
        GUARD,
        "if state.config.unlock_on_save and wants_release():",
        "if wants_release():",
        "LOCKING_UNLOCK_ON_SAVE = False still releases on save",
    ),
    M(
        "guard-reset-identity",
        IDENTITY,
        "    current = request._get_current_object()  # type: ignore[attr-defined]",
        "    current = current_app._get_current_object()  # type: ignore[attr-defined]",
        "identity carried over between requests (kept on the app, not the request)",
    ),
    M(
        "verified-other-request",
        VERIFIED,
        "    return request._get_current_object()  # type: ignore[attr-defined]",
        '    return __import__("flask").current_app._get_current_object()',
        "current_lock returns a lock verified for an earlier request (kept on the app)",
    ),
    M(
        "guard-signal",
        GUARD,
        "if write_refused.receivers:",
        "if not write_refused.receivers:",
        "write_refused not sent to its receivers",
    ),
    M(
        "guard-own-blueprint",
        GUARD,
        "    if blueprint in state.blueprint_names:\n        return True\n",
        "",
        "the lock endpoints themselves are guarded",
    ),
    # guard-content-claims dropped: before_request now serves a claimed @lock request in the
    # same branch that skips the guard, so the fault is guard-dispatch's.
    M(
        "guard-nested-exempt",
        GUARD,
        "if any(registered.get(name) in exempt for name in current.blueprints):",
        'if any(registered.get(name.rsplit(".", 1)[-1]) in exempt for name in current.blueprints):',
        "exempt(child) no longer exempts a nested blueprint",
    ),
    M(
        "guard-exempt-parent",
        GUARD,
        "if any(registered.get(name) in exempt for name in current.blueprints):",
        "if registered.get(current.blueprint) in exempt:",
        "exempt(parent) no longer exempts the blueprints nested in it",
    ),
    M(
        "guard-view-exempt",
        GUARD,
        'return view is not None and getattr(view, "_locking_exempt", False)',
        "return False",
        "exempt views are guarded",
    ),
    M(
        "guard-dispatch",
        GUARD,
        "return None if current.blueprint == content.name else content.dispatch()",
        "return None",
        "@lock under a catch-all route is not served",
    ),
    # -- keys.py ---------------------------------------------------------------------------
    M(
        "keys-redirect",
        KEYS,
        "            path = _redirect_path(adapter, redirect)\n",
        "            break\n",
        "a redirecting spelling (strict slashes, //) is not followed to the rule it names",
    ),
    M(
        "keys-request-redirect",
        KEYS,
        "if not isinstance(error, RequestRedirect) or adapter is None:",
        "if True:",
        "a redirected request is keyed by its raw spelling",
    ),
    M(
        "keys-guarded-methods",
        KEYS,
        'methods = sorted(state.config.guarded_methods) or ["GET"]',
        'methods = ["GET"]',
        "a path is keyed by its GET rule, not the guarded methods' rules",
    ),
    M(
        "keys-agreement",
        KEYS,
        "    if len(keys) > 1:\n",
        "    if False:\n",
        "guarded methods whose rules key a path differently: one of their keys is locked",
    ),
    M(
        "keys-request-namespace",
        KEYS,
        "    space = _space(adapter)\n    key = space + path\n",
        "    space = \"\"\n    key = space + path\n",
        "requests keyed without their host/mount namespace",
    ),
    M(
        "keys-path-namespace",
        KEYS,
        "        space = _space(adapter)\n",
        '        space = ""\n',
        "a bare path locked inside a tenant's request is keyed without the tenant's namespace",
    ),
    # -- engine.py -------------------------------------------------------------------------
    M(
        "engine-raw-key",
        TOKENS,
        'self._key = hashlib.sha256(b"flask-locking token key\\x00" + material).digest()',
        "self._key = material",
        "tokens keyed with the raw SECRET_KEY",
    ),
    M(
        "engine-empty-key",
        TOKENS,
        "if not material:",
        "if material is None:",
        "an empty SECRET_KEY is used as the token key",
    ),
    M(
        "engine-unshared-key",
        TOKENS,
        "material = self._shared_secret(secrets.token_hex(32))",
        "material = secrets.token_hex(32)",
        "a generated key is not shared through the store (each process its own)",
    ),
    M(
        "engine-token-eq",
        ENGINE,
        "return tokens_equal(token, self.token_for(row))",
        "return token == self.token_for(row)",
        "non-constant-time token comparison",
    ),
    M(
        "engine-stealable-type",
        ENGINE,
        '        if not isinstance(stealable, bool):\n'
        '            raise InvalidInput("stealable must be true or false.")\n',
        "",
        "stealable accepts any value",
    ),
    M(
        "engine-acquired-event",
        ENGINE,
        '"acquired" if result.granted else "refreshed"',
        '"refreshed" if result.granted else "acquired"',
        "acquired/refreshed events swapped",
    ),
    M(
        "engine-conflict-event",
        ENGINE,
        '            if holder is not None:\n                self._emit("conflict", holder)\n',
        "",
        "no conflict event",
    ),
    M(
        "engine-refresh-claim",
        ENGINE,
        "UNSET if token is not None else owner",
        "owner",
        "refresh: a wrong token falls back to the owner",
    ),
    M(
        "engine-refresh-timeout",
        ENGINE,
        "timeout_ms if timeout_ms is not None else row.timeout_ms",
        "row.timeout_ms",
        "refresh ignores a new timeout",
    ),
    M(
        "engine-refresh-race",
        ENGINE,
        "        if refreshed is None:\n            raise LockNotHeld(",
        "        if refreshed is None:\n            refreshed = row\n"
        "        if False:\n            raise LockNotHeld(",
        "refresh reports success when the grant ended between the read and the write",
    ),
    M(
        "engine-release-retry",
        ENGINE,
        "for _ in range(5):",
        "for _ in range(1):",
        "release gives up when the grant changed between the read and the write",
    ),
    M(
        "engine-release-claim",
        ENGINE,
        "claim = UNSET if token is not None and not force else owner",
        "claim = owner",
        "release: a stale token falls back to the owner",
    ),
    M(
        "engine-steal-stealable",
        ENGINE,
        "if not row.stealable and not (may_steal is not None and may_steal(lock)):",
        "if not (may_steal is not None and may_steal(lock)):",
        "a stealable lock cannot be stolen without may_steal",
    ),
    M(
        "engine-steal-never-denied",
        ENGINE,
        "if not row.stealable and not (may_steal is not None and may_steal(lock)):",
        "if False:",
        "a non-stealable lock can be stolen",
    ),
    M(
        "engine-stolen-event",
        ENGINE,
        "stolen = True",
        "stolen = False",
        "a steal is reported as a release",
    ),
    M(
        "engine-release-unchecked",
        ENGINE,
        "if self.store.release(row, **self._recording(_ended_event(kind, by))):",
        "if self.store.release(row, **self._recording(_ended_event(kind, by))) or True:",
        "release reports a lock it did not end",
    ),
    M(
        "engine-get-reveal",
        ENGINE,
        "reveal=self._holds(row, token, owner))",
        "reveal=True)",
        "get() reveals the token to anyone",
    ),
    M(
        "engine-covering-root",
        ENGINE,
        "candidates = [key, *ancestors(key)]",
        "candidates = [key, *ancestors(key)[1:]]",
        "the root / is not looked up for covering locks",
    ),
    M(
        "engine-covering-lockable",
        ENGINE,
        "tuple(c for c in candidates if is_lockable(c))",
        "tuple(candidates)",
        "unlockable keys (NUL, too long) are sent to the database",
        needs="PostgreSQL or MariaDB",
    ),  # NUL bytes refused; trailing spaces ignored
    M(
        "engine-covering-exact",
        ENGINE,
        "live_among(lookup) if row.resource == key or row.infinite]",
        "live_among(lookup) if row.infinite]",
        "the lock on the path itself does not cover it",
    ),
    M(
        "engine-covering-depth0",
        ENGINE,
        "live_among(lookup) if row.resource == key or row.infinite]",
        "live_among(lookup)]",
        "a depth-0 lock on an ancestor covers the path",
    ),
    M(
        "engine-covering-deepest",
        ENGINE,
        "(row.resource != key, -len(row.resource))",
        "(row.resource != key, len(row.resource))",
        "the shallowest covering lock wins",
        equivalent="two live infinite-depth locks never nest (the overlap check refuses the "
        "second), so at most one ancestor row is infinite and the choice never arises",
    ),
    M(
        "engine-purge-events",
        ENGINE,
        'wanted = self._notify is not None and (\n'
        '            self._listening is None or self._listening("expired")\n        )',
        "wanted = False",
        "purge sends no expired events",
    ),
    M(
        "engine-expires-at",
        LOCK,
        "expires_at=row.expires_ms / 1000",
        "expires_at=row.locked_at_ms / 1000",
        "wrong expiry on the Lock",
    ),
    M(
        "engine-holds-any-token",
        ENGINE,
        "if token is not None and self.token_matches(row, token):",
        "if token is not None:",
        "any token proves ownership",
    ),
    M(
        "engine-holds-owner",
        ENGINE,
        "return owner_key(Owner.coerce(owner)) == row.owner_key",
        "return owner_key(Owner.coerce(owner)) != row.owner_key",
        "ownership inverted",
    ),
    M(
        "engine-timeout-min",
        ENGINE,
        "if not MIN_TIMEOUT <= timeout <=",
        "if not MIN_TIMEOUT < timeout <=",
        "the shortest timeout (0.001 s) is refused",
    ),
    M(
        "engine-timeout-max",
        ENGINE,
        "<= timeout <= self.max_timeout",
        "<= timeout < self.max_timeout",
        "the longest timeout is refused",
    ),
    M(
        "engine-timeout-min-const",
        ENGINE,
        "MIN_TIMEOUT: Final = 0.001",
        "MIN_TIMEOUT: Final = 0.01",
        "the shortest timeout raised tenfold",
    ),
    M(
        "engine-timeout-round",
        ENGINE,
        "round(timeout * 1000)",
        "int(timeout * 1000)",
        "timeouts truncated to milliseconds (1.005 s becomes 1.004 s)",
    ),
    M(
        "engine-timeout-floor1",
        ENGINE,
        "return max(1, round(timeout * 1000))",
        "return round(timeout * 1000)",
        "no 1 ms floor",
        equivalent="the smallest accepted timeout is 0.001 s, which rounds to 1 ms already",
    ),
    M(
        "engine-timeout-bool",
        ENGINE,
        "if isinstance(timeout, bool) or not",
        "if not",
        "timeout=True accepted as 1 second",
    ),
    M(
        "engine-owner-id-cap",
        ENGINE,
        "if len(owner.id) > 255",
        "if len(owner.id) > 256",
        "a 256-character identity id is accepted",
    ),
    M(
        "engine-owner-name-cap",
        ENGINE,
        "_text(owner.name)[:255]",
        "_text(owner.name)[:256]",
        "display names cut at 256",
    ),
    M(
        "engine-owner-url-cap",
        ENGINE,
        "len(owner.url) <= 1024",
        "len(owner.url) < 1024",
        "a 1024-character owner URL is dropped",
    ),
    M(
        "engine-depth-bool",
        ENGINE,
        "if depth == 0 and not isinstance(depth, bool):",
        "if depth == 0:",
        "depth=False accepted as 0",
    ),
    # -- tokens.py -------------------------------------------------------------------------
    M(
        "tokens-secret-bytes",
        TOKENS,
        "SECRET_BYTES = 32",
        "SECRET_BYTES = 8",
        "64-bit per-lock secrets",
    ),
    M(
        "tokens-no-version",
        TOKENS,
        'f"{resource}\\x00{version}\\x00{secret}"',
        'f"{resource}\\x00{secret}"',
        "the token does not bind the grant's version",
    ),
    M(
        "tokens-no-resource",
        TOKENS,
        'f"{resource}\\x00{version}\\x00{secret}"',
        'f"{version}\\x00{secret}"',
        "the token does not bind the resource",
    ),
    M(
        "tokens-digest",
        TOKENS,
        'hmac.digest(key, message, "sha256")',
        'hmac.digest(key, message, "md5")',
        "a weaker, shorter digest",
    ),
    M("tokens-padding", TOKENS, '.rstrip(b"=")', "", "tokens keep base64 padding"),
    M(
        "tokens-compare",
        TOKENS,
        'return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode())',
        "return presented == expected",
        "non-constant-time comparison",
    ),
    M(
        "tokens-surrogates",
        TOKENS,
        'presented.encode("utf-8", "surrogatepass")',
        "presented.encode()",
        "a token with a lone surrogate crashes the comparison",
    ),
    M("tokens-strip", TOKENS, "    value = value.strip()\n", "", "header whitespace kept"),
    M(
        "tokens-brackets",
        TOKENS,
        'value.startswith("<") and value.endswith(">")',
        'value.startswith("<") or value.endswith(">")',
        "half-bracketed tokens unwrapped",
    ),
    M(
        "tokens-inner-strip",
        TOKENS,
        "value = value[1:-1].strip()",
        "value = value[1:-1]",
        "spaces inside <...> kept",
    ),
    M("tokens-blank", TOKENS, "return value or None", "return value", "a blank header is a token"),
    # -- resources.py ----------------------------------------------------------------------
    M(
        "resources-cap-511",
        RESOURCES,
        "MAX_RESOURCE_LENGTH = 512",
        "MAX_RESOURCE_LENGTH = 511",
        "the key cap lowered",
    ),
    M(
        "resources-cap-513",
        RESOURCES,
        "MAX_RESOURCE_LENGTH = 512",
        "MAX_RESOURCE_LENGTH = 513",
        "the key cap raised",
    ),
    M(
        "resources-normalize-cap",
        RESOURCES,
        "if len(key) > MAX_RESOURCE_LENGTH:",
        "if len(key) >= MAX_RESOURCE_LENGTH:",
        "a 512-character path cannot be locked",
    ),
    M(
        "resources-lockable-cap",
        RESOURCES,
        "len(key) <= MAX_RESOURCE_LENGTH",
        "len(key) < MAX_RESOURCE_LENGTH",
        "a 512-character path is locked but not guarded",
    ),
    M(
        "resources-lockable-control",
        RESOURCES,
        "        and not _CONTROL.search(key)\n        and",
        "        and",
        "the guard sends control characters to the database",
        needs="PostgreSQL or MariaDB",
    ),  # NUL bytes refused; trailing spaces ignored
    M(
        "resources-control-space",
        RESOURCES,
        '_CONTROL = re.compile("[\\x00-\\x1f\\x7f]")',
        '_CONTROL = re.compile("[\\x00-\\x20\\x7f]")',
        "spaces refused as control characters",
    ),
    M(
        "resources-control-del",
        RESOURCES,
        '_CONTROL = re.compile("[\\x00-\\x1f\\x7f]")',
        '_CONTROL = re.compile("[\\x00-\\x1f]")',
        "DEL accepted in a key",
    ),
    M(
        "resources-dot",
        RESOURCES,
        'if segment == "" or (segment == "." and not strict):',
        'if segment == "":',
        "the guard treats /a/./b as /b",
    ),
    M(
        "resources-dotdot",
        RESOURCES,
        "            if segments:\n                segments.pop()\n",
        "",
        "the guard checks /a/../b as /a/b",
    ),
    M(
        "resources-trailing-space",
        RESOURCES,
        'if " /" in key + "/":',
        'if " /" in key:',
        "a last segment ending in a space is accepted",
    ),
    M(
        "resources-lockable-space",
        RESOURCES,
        'and " /" not in key + "/"',
        'and " /" not in key',
        "is_lockable says yes to a key normalize refuses",
    ),
    M(
        "resources-lockable-utf8",
        RESOURCES,
        "        and _is_utf8(key)\n    )",
        "    )",
        "the guard sends lone surrogates to the database",
    ),
    M(
        "resources-ancestors-root-self",
        RESOURCES,
        '    if path == "/":\n        return []\n',
        "",
        "the root is its own ancestor",
    ),
    M(
        "resources-ancestors-root",
        RESOURCES,
        'result = [space + "/"]',
        "result = []",
        "the root is nobody's ancestor",
    ),
    M(
        "resources-ancestors-step",
        RESOURCES,
        'position = path.find("/", position + 1)',
        'position = path.find("/", position + 2)',
        "search for the next slash one further on",
        equivalent="normalised keys have no empty segments, so the next slash is never right "
        "after the previous one",
    ),
    M(
        "resources-bounds-high",
        RESOURCES,
        'return base + "/", base + "0"',
        'return base + "/", base + "1"',
        "siblings like /a0 counted as below /a",
    ),
    M(
        "resources-bounds-root",
        RESOURCES,
        'base = space + ("" if path == "/" else path)',
        "base = space + path",
        "nothing is below the root",
    ),
    M("resources-within-root", RESOURCES, ' or above == "/"', "", "is_within(key, '/') is false"),
    M(
        "resources-within-prefix",
        RESOURCES,
        'path.startswith(above + "/")',
        "path.startswith(above)",
        "/ab is within /a",
    ),
    # -- store/sql.py ----------------------------------------------------------------------
    M(
        "sql-live-ms",
        SQL,
        "(t.c.locked_at_ms + t.c.timeout_ms) > now)",
        "(t.c.locked_at_ms + t.c.timeout_ms) >= now)",
        "a grant is still live at its exact expiry millisecond "
        "(live_at: lookups, overlap, listing)",
    ),
    # sql-overlap-ms and sql-live-rows-ms dropped: the overlap check and the listing now use
    # the one live_at helper, whose boundary sql-live-ms mutates.
    M(
        "sql-live-tombstone",
        SQL,
        'return sa.and_(t.c.secret != "", (t.c.locked_at_ms',
        "return sa.and_((t.c.locked_at_ms",
        "a released grant (empty secret) counts as live",
    ),
    M(
        "sql-overlap-depth0",
        SQL,
        "above = sa.and_(t.c.resource.in_(keys), t.c.infinite) if count else sa.false()",
        "above = t.c.resource.in_(keys) if count else sa.false()",
        "a depth-0 lock on an ancestor blocks",
    ),
    M(
        "sql-below-low",
        SQL,
        't.c.resource > bindparam("low")',
        't.c.resource >= bindparam("low")',
        "the lower bound key + '/' included",
    ),
    M(
        "sql-below-high",
        SQL,
        't.c.resource < bindparam("high")',
        't.c.resource <= bindparam("high")',
        "a sibling named key + '0' counted as below",
    ),
    M(
        "sql-grant-version",
        SQL,
        '            t.c.version == bindparam("grant_version"),\n'
        '            t.c.secret == bindparam("grant_secret"),\n            live,',
        '            t.c.secret == bindparam("grant_secret"),\n            live,',
        "refresh/release do not compare the version",
    ),
    M(
        "sql-grant-secret",
        SQL,
        '            t.c.secret == bindparam("grant_secret"),\n            live,\n        )',
        "            live,\n        )",
        "refresh/release do not compare the secret",
    ),
    M(
        "sql-grant-live",
        SQL,
        '            t.c.secret == bindparam("grant_secret"),\n            live,\n        )',
        '            t.c.secret == bindparam("grant_secret"),\n        )',
        "refresh/release work on an expired grant",
    ),
    M(
        "sql-refresh-restart",
        SQL,
        '.values(locked_at_ms=now, timeout_ms=bindparam("new_timeout_ms"))',
        '.values(timeout_ms=bindparam("new_timeout_ms"))',
        "refresh does not restart the lease",
    ),
    M(
        "sql-release-timeout",
        SQL,
        '"owner_url": None, "timeout_ms": 0\n}',
        '"owner_url": None\n}',
        "a released row keeps its lease",
        equivalent="every statement that decides liveness tests the empty secret too (live_at, "
        "expired_at, ended_at), the upsert overwrites a tombstone's timeout with the new grant's, "
        "and refresh and release match only a live grant's secret: a tombstone's timeout is "
        "never read (the zero keeps the raw row ended for a reader that checks the time alone)",
    ),
    M(
        "sql-purge-ms",
        SQL,
        '(t.c.locked_at_ms + t.c.timeout_ms) <= now, t.c.secret != "")',
        '(t.c.locked_at_ms + t.c.timeout_ms) < now, t.c.secret != "")',
        "purge keeps a grant expired at its exact millisecond (expired_at)",
    ),
    M(
        "sql-purge-tombstones",
        SQL,
        '(t.c.locked_at_ms + t.c.timeout_ms) <= now, t.c.secret != "")',
        "(t.c.locked_at_ms + t.c.timeout_ms) <= now)",
        "purge counts already wiped rows (expired_at)",
    ),
    # sql-purge-rows-ms and sql-purge-rows-tombstones dropped: purge_expired_rows now uses the
    # one expired_at helper, which sql-purge-ms and sql-purge-tombstones mutate.
    M(
        "sql-purge-rows-reported",
        SQL,
        "                if int(cursor.rowcount) > 0:  # (see _matched)\n"
        "                    wiped.append(row)",
        "                if int(cursor.rowcount) >= 0:\n                    wiped.append(row)",
        "purge reports grants it did not wipe (re-acquired in between)",
    ),
    M(
        "sql-purge-rows-expired",
        SQL,
        "self._wipe = sa.update(t).where(\n            expired_at(t, now),\n",
        "self._wipe = sa.update(t).where(\n",
        "the wipe does not re-check expiry",
        equivalent="a grant read as expired stays expired: refresh needs a live grant, and a new "
        "grant changes version and secret, which the wipe compares",
    ),
    M(
        "sql-granted",
        SQL,
        "granted=row.secret == request.secret",
        "granted=row.secret != request.secret",
        "a refresh reported as a new grant",
    ),
    M(
        "sql-overlap-ignored",
        SQL,
        "                    if overlap is not None:\n"
        "                        raise HeldElsewhere(overlap)",
        "                    if False:\n                        raise HeldElsewhere(overlap)",
        "overlapping infinite-depth locks both granted",
    ),
    M(
        "sql-overlap-app-clock",
        SQL,
        'params = {"now": now, **overlap_params(request)}',
        'params = {"now": int(time.time() * 1000), **overlap_params(request)}',
        "the overlap check reads the app's clock",
    ),
    M(
        "sql-holder",
        SQL,
        "}))\n        raise HeldElsewhere(holder)",
        "}))\n        raise HeldElsewhere(None)",
        "a conflict does not say who holds the lock",
    ),
    M(
        "sql-holder-at-once",
        SQL,
        "request.owner_key:\n            raise HeldElsewhere(holder)",
        "request.owner_key:\n            raise HeldElsewhere(None)",
        "a conflict decided by the one-statement acquisition does not say who holds the lock",
    ),
    M(
        "sql-overlap-shapes",
        SQL,
        "    if count > 64:\n        return build(), False",
        "    if count > 0:\n        return build(), False",
        "every overlap / lookup statement compiled for one use, never cached",
        equivalent="a cache of compiled statements: the statement built each time is the same",
    ),
    M(
        "sql-refresh-cas",
        "flask_locking/store/mysql.py",
        "return _row(first(read)) if updated.rowcount else None",
        "return _row(first(read))",
        "refresh of an ended grant returns the row now there",
        needs="MariaDB",
    ),  # the one backend without UPDATE ... RETURNING (read-back path)
    M(
        "sql-release-cas",
        SQL,
        "released = int(cursor.rowcount) > 0",
        "released = int(cursor.rowcount) >= 0",
        "release reports success when nothing matched",
    ),
    M(
        "sql-live-rows-root",
        SQL,
        "if prefix is not None:",
        'if prefix is not None and prefix != "/":',
        "the root prefix lists every namespace, not only its own",
    ),
    M(
        "sql-live-rows-prefix-self",
        SQL,
        "sa.or_(t.c.resource == prefix, sa.and_(",
        "sa.or_(sa.false(), sa.and_(",
        "listing under a prefix leaves out the lock on the prefix itself",
    ),
    # -- store/sqlite.py -------------------------------------------------------------------
    M("sqlite-epoch", SQLITE, "- 2440587.5)", "- 2440587)", "the SQLite clock 12 hours off"),
    M("sqlite-ms", SQLITE, "* 86400000.0)", "* 86400.0)", "the SQLite clock in seconds"),
    M(
        "sqlite-round",
        SQLITE,
        "sa.func.round((sa.func.julianday",
        "((sa.func.julianday",
        "the SQLite clock truncated instead of rounded",
        equivalent="every statement reads the clock through the same expression, so all times "
        "shift together by under a millisecond; order and differences are what count",
    ),
    M(
        "sqlite-begin-immediate",
        SQLITE,
        'conn.exec_driver_sql("BEGIN IMMEDIATE")',
        'conn.exec_driver_sql("BEGIN")',
        "deferred write transactions",
        equivalent="every write transaction starts with a write (the upsert, the UPDATE, the "
        "INSERT OR IGNORE), which takes the write lock through the busy handler before any "
        "snapshot is read; IMMEDIATE keeps that true for a transaction that would read first",
    ),
    M(
        "sqlite-busy",
        SQLITE,
        '        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")\n',
        "",
        "no busy timeout: concurrent writers fail at once",
    ),
    M(
        "sqlite-wal-retry",
        SQLITE,
        'if "locked" not in str(error) or time.monotonic() + delay > deadline:',
        "if True:",
        "no retry of the WAL switch",
    ),
    # -- store/upsert.py -------------------------------------------------------------------
    M(
        "upsert-expired-ms",
        SQL,
        "(t.c.locked_at_ms + t.c.timeout_ms) <= now)",
        "(t.c.locked_at_ms + t.c.timeout_ms) < now)",
        "a grant at its exact expiry millisecond cannot be taken over",
    ),
    M(
        "upsert-mine",
        UPSERT,
        "where=sa.or_(expired, mine)",
        "where=expired",
        "the owner cannot refresh by locking again",
    ),
    M(
        "upsert-version",
        UPSERT,
        '"version": sa.case((expired, t.c.version + 1), else_=t.c.version)',
        '"version": sa.case((expired, t.c.version), else_=t.c.version)',
        "a new grant keeps the old version",
    ),
    M(
        "upsert-weaken",
        UPSERT,
        "else_=sa.and_(t.c.stealable, ex.stealable)",
        "else_=ex.stealable",
        "the owner locking again can make the lock stealable again",
    ),
    M(
        "upsert-shallow",
        UPSERT,
        "else_=sa.or_(t.c.infinite, ex.infinite)",
        "else_=ex.infinite",
        "the owner locking again can drop infinite depth",
    ),
]
