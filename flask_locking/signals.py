"""Blinker signals, sent with the app as sender and the lock (token withheld) as ``lock``.

Connect as with Flask's own signals::

    from flask_locking.signals import lock_acquired

    @lock_acquired.connect_via(app)
    def audit(app, lock, **extra): ...
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A lock was newly granted (``lock``).
lock_acquired = _signals.signal("locking.lock-acquired")
#: A lock's timeout was restarted, by a refresh or by its owner locking again (``lock``).
lock_refreshed = _signals.signal("locking.lock-refreshed")
#: A lock was released by its owner or with its token (``lock``: the lock that ended).
lock_released = _signals.signal("locking.lock-released")
#: Another identity force-released a lock (``lock``: the lock that was stolen).
lock_stolen = _signals.signal("locking.lock-stolen")
#: An acquisition was refused because ``lock`` holds the resource.
lock_conflict = _signals.signal("locking.lock-conflict")
#: ``purge_expired`` (``flask locks purge``) wiped a lock whose timeout had run out
#: (``lock``: the lock as it was). Expiry itself is lazy: a lock stops being live at its
#: ``expires`` instant without any event; this is sent only when a purge removes it.
lock_expired = _signals.signal("locking.lock-expired")
#: The guard refused a write (``lock``: the covering lock or ``None``; ``reason``: "locked"
#: or "stale"; ``path``).
write_refused = _signals.signal("locking.write-refused")

#: Engine event name → signal.
BY_EVENT = {
    "acquired": lock_acquired,
    "refreshed": lock_refreshed,
    "released": lock_released,
    "stolen": lock_stolen,
    "conflict": lock_conflict,
    "expired": lock_expired,
}
