"""How the content dialect answers where Plone's ``@lock`` and the strict contract differ.

``LOCKING_CONTENT_COMPAT`` picks one policy per app: :class:`StrictCompat` (the default)
or :class:`PloneCompat`. The content dialect asks its policy four questions and maps the
answers onto responses; the engine and the guard hold no mode of their own (the guard only
asks the dialect whether it ignores a token for a resource nobody holds).

Plone's behaviour, as its service code defines it (``plone.restapi.services.locking`` on
top of ``plone.locking``'s ``TTWLockable``): every ``@lock`` call answers 200 with the lock
as it stands after the call, whether or not the call changed anything; ``stealable`` is
computed for the viewer (a non-stealable lock reads as stealable to its owner); the write
guard only compares a presented token with a live lock's. Where that would lose an update
or reveal a token, :class:`PloneCompat` keeps the strict answer: see the table in
``docs/dialects.rst``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from ..errors import LockConflict, LockPermissionDenied
from ..lock import UNLOCKED_JSON, Lock, Owner, owner_key

#: The lock type Plone names in ``name``: every lock made through ``@lock`` has this type,
#: stealable or not (non-stealable is a marker on the object, not another type).
PLONE_LOCK_TYPE = "plone.locking.stealable"


class StrictCompat:
    """The strict contract (``docs/dialects.rst``): a refused action is an error,
    ``stealable`` is the lock's own setting, and a token that opens nothing is refused by
    the guard."""

    #: The value of ``LOCKING_CONTENT_COMPAT`` that selects this policy.
    mode: ClassVar[str] = "strict"
    #: The guard lets a write through when it carries a ``Lock-Token`` but no live lock
    #: covers the resource (instead of refusing it as stale).
    ignores_unheld_token: ClassVar[bool] = False
    #: Anonymous callers are refused ``POST``/``PATCH``/``DELETE @lock`` with 401.
    writes_need_identity: ClassVar[bool] = False

    #: :meth:`answers_refusal` answers every lock-state refusal (a conflict: 409) with 200,
    #: so the ``@lock`` writes never answer 409 and their 200 may show another's lock or
    #: the unlocked body (what the OpenAPI document says of them).
    answers_conflicts: ClassVar[bool] = False

    def answers_refusal(self, error: Exception) -> bool:
        """True: answer a refused ``POST``/``PATCH``/``DELETE`` with 200 and the lock as it
        now stands, instead of the error ``error`` maps to."""
        return False

    def lock_json(self, lock: Lock | None, viewer: Owner | None) -> dict[str, Any]:
        """The body showing ``lock`` (``None``: unlocked) to ``viewer``. The token is in it
        only when ``lock`` carries one: the engine fills it in for the owner alone (or for a
        caller that presented it)."""
        return lock.to_json() if lock is not None else dict(UNLOCKED_JSON)


class PloneCompat(StrictCompat):
    """Plone's answers, for Volto and other plone.restapi clients (``docs/dialects.rst``)."""

    mode = "plone"
    ignores_unheld_token = True
    writes_need_identity = True
    answers_conflicts = True

    def answers_refusal(self, error: Exception) -> bool:
        # Plone's services never refuse on lock state: lock() on a locked object, unlock()
        # by a non-owner, unlock() of a non-stealable lock by force, refresh_lock() of
        # nothing: each does nothing and answers the lock info. A permission the host's
        # authorizer denies (view, lock, unlock) stays a 403, as Plone's own permission
        # checks do; only the engine's refusal to steal is lock state.
        if isinstance(error, LockPermissionDenied):
            return error.action == "steal"
        return isinstance(error, LockConflict)

    def lock_json(self, lock: Lock | None, viewer: Owner | None) -> dict[str, Any]:
        data = super().lock_json(lock, viewer)
        if lock is None:
            return data
        # plone.locking: a non-stealable lock is stealable for whoever may safely unlock
        # it, i.e. its creator.
        data["stealable"] = lock.stealable or owner_key(viewer) == owner_key(lock.owner)
        data["name"] = PLONE_LOCK_TYPE
        # @plone/types declares a string; Plone links the author page. A host that wants a
        # link gives its owners a url; a bare id gets "" rather than a made-up address.
        data["creator_url"] = (lock.owner.url if lock.owner is not None else None) or ""
        # plone.restapi's format: whole seconds, with the UTC offset.
        data["created"] = datetime.fromtimestamp(lock.time, tz=timezone.utc).isoformat(
            timespec="seconds"
        )
        return data


#: The policy of each ``LOCKING_CONTENT_COMPAT`` value.
POLICIES: dict[str, StrictCompat] = {
    policy.mode: policy for policy in (StrictCompat(), PloneCompat())
}


def compat_for(mode: str) -> StrictCompat:
    """The policy for a ``LOCKING_CONTENT_COMPAT`` value (validated by the config)."""
    return POLICIES[mode]
