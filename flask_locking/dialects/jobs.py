"""Job locks: ``POST|DELETE <prefix>/companies/{companyID}/jobs/{jobID}/lock/``.

The lock is an infinite-depth lock on ``<prefix>/companies/{c}/jobs/{j}``, so the guard
refuses writes to the job and to every path below it. The URL is served with and without
the trailing slash. ``@locking.job_exists`` tells the dialect which jobs exist (404 when
one does not); by default every id exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .path import PathDialect, Statuses


class JobsDialect(PathDialect):
    """Job locks: 201 on lock (200 when the owner locks again), 409 on conflict,
    204 on release, 404 when there is no lock; guard 423 / 412."""

    name = "locking_jobs"
    label = "Job"
    config_name = "JOBS"
    default_prefix = "/api/v1.0"
    template = "/companies/<int:companyID>/jobs/<int:jobID>"
    lock_path = "/lock/"
    actions: ClassVar[Mapping[str, str]] = {"POST": "lock", "DELETE": "unlock"}
    statuses = Statuses(locked=423, stale=412, unheld=404)
    where = "on a job lock"
    unheld_message = "Job lock does not exist."
    missing_message = "Job {jobID} of company {companyID} does not exist."
    summaries: ClassVar[Mapping[str, str]] = {
        "lock": "Lock the job and everything below it.",
        "unlock": "Release the job lock ({\"force\": true} steals someone else's).",
    }
