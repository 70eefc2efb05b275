"""Job locks: ``POST|DELETE <prefix>/companies/{companyID}/jobs/{jobID}/lock/``.

The lock is an infinite-depth lock on ``<prefix>/companies/{c}/jobs/{j}``, so the guard
refuses writes to the job and to every path below it. The URL is served with and without
the trailing slash. ``@locking.job_exists`` tells the dialect which jobs exist (404 when
one does not); by default every id exists.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from .base import Dialect, NotFoundError, integer_segment

#: Methods routed to the view; only POST and DELETE are served, the rest get 405.
ROUTED = ("GET", "POST", "PUT", "PATCH", "DELETE")
SERVED = ("POST", "DELETE")


class JobsDialect(Dialect):
    """Job locks: 201 on lock (200 when the owner locks again), 409 on conflict,
    204 on release, 404 when there is no lock; guard 423 / 412."""

    name = "locking_jobs"
    locked_status = 423
    stale_status = 412

    def job_ids(self, key: str) -> tuple[int, int] | None:
        """``(company_id, job_id)`` when ``key`` is a job path or lies below one."""
        if self.prefix and not key.startswith(self.prefix + "/"):
            return None
        segments = key[len(self.prefix) :].split("/")  # ["", "companies", c, "jobs", j, ...]
        if len(segments) < 5 or segments[1] != "companies" or segments[3] != "jobs":
            return None
        company = integer_segment(segments[2], routed=True)
        job = integer_segment(segments[4], routed=True)
        if company is None or job is None:
            return None
        return company, job

    def owns(self, key: str) -> bool:
        return self.job_ids(key) is not None

    def job_key(self, company_id: int, job_id: int) -> str:
        """The resource key a job's lock is held on."""
        return f"{self.prefix}/companies/{company_id}/jobs/{job_id}"

    def resource_key(self, key: str) -> str:
        ids = self.job_ids(key)
        if ids is None:
            return key
        rest = key[len(self.prefix) :].split("/")[5:]
        return "/".join([self.job_key(*ids), *rest])

    def create_blueprint(self) -> Blueprint:
        bp = Blueprint(self.name, __name__)
        bp.add_url_rule(
            f"{self.prefix}/companies/<company_id>/jobs/<job_id>/lock/",
            "lock",
            self.endpoint(self.view),
            methods=ROUTED,
            strict_slashes=False,  # serve ".../lock" too, without a redirect
        )
        return bp

    def view(self, company_id: str, job_id: str) -> Response:
        if request.method not in SERVED:
            return self.error(
                405,
                f"{request.method} is not allowed on a job lock; use POST to lock and "
                "DELETE to unlock.",
                headers={"Allow": ", ".join(SERVED)},
            )
        key = self.job_key(*self._existing_job(company_id, job_id))
        if request.method == "POST":
            lock, granted = self.acquire(key, depth="infinity")
            return self.lock_response(lock, 201 if granted else 200)
        if self.release(key) is None:
            raise NotFoundError("Job lock does not exist.")
        return Response(status=204)

    def _existing_job(self, company_id: str, job_id: str) -> tuple[int, int]:
        company, job = integer_segment(company_id), integer_segment(job_id)
        if company is None:
            raise NotFoundError(f"companyID must be a whole number >= 0, not {company_id!r}.")
        if job is None:
            raise NotFoundError(f"jobID must be a whole number >= 0, not {job_id!r}.")
        exists = self.state.extension.job_exists_callback
        if exists is not None and not exists(company, job):
            raise NotFoundError(f"Job {job} of company {company} does not exist.")
        return company, job
