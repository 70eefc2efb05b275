"""Pages (server-rendered) and the small JSON APIs the pages' JavaScript talks to.

Every write API here needs the lock: flask-locking's guard refuses a PATCH to a locked
resource without its token (403/423/409) or with a stale one (412); on top of that these
views refuse a PATCH made without any lock (428), so an edit is always made under a lock.
"""

from __future__ import annotations

import re
import time
from typing import Any, cast

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy.engine import CursorResult

from flask_locking import AuthenticationRequired, Lock, LockingError, LockLost, current_lock
from flask_locking.fencing import fenced_update
from flask_locking.writes import can_hold

from .activity import lock_json, recent, since
from .extensions import db, locking
from .models import Client, Document, Job, now
from .users import USERS, User, current_user, mint_jwt, user_from_bearer

bp = Blueprint("pages", __name__)

JOB_STATUSES = ("open", "in progress", "blocked", "done")
MAX_TEXT = 20_000


# -- helpers -----------------------------------------------------------------------------


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def api_error(status: int, message: str) -> Response:
    """``{"error": {"type", "message"}}``: the format of the content and job lock APIs."""
    types = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 428: "PreconditionRequired"}
    response = jsonify(error={"type": types.get(status, "Error"), "message": message})
    response.status_code = status
    return response


def json_body(fields: dict[str, type]) -> dict[str, Any] | str:
    """The request's JSON object with only ``fields`` (each of its type), or a message."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return "Send a JSON object body."
    unknown = sorted(set(body) - set(fields))
    if unknown:
        return f"Unknown fields: {', '.join(unknown)}; accepted: {', '.join(fields)}."
    for name, kind in fields.items():
        if name in body and not isinstance(body[name], kind):
            return f"{name} must be a {kind.__name__}."
        if isinstance(body.get(name), str) and len(body[name]) > MAX_TEXT:
            return f"{name} is longer than {MAX_TEXT} characters."
    return body


def no_lock_message(path: str, how: str) -> str:
    return f"Lock {path} first ({how}) and send its token in the Lock-Token header."


def live_lock(path: str, viewer: User | None) -> Lock | None:
    """The live lock on ``path``; with its token when ``viewer`` holds it."""
    return locking.get(path, owner=viewer) if viewer is not None else locking.get(path)


def page_context() -> dict[str, Any]:
    user = current_user()
    return {"user": user, "users": USERS.values(), "server_now": time.time()}


@bp.app_context_processor
def inject_user() -> dict[str, Any]:
    return page_context()


# -- sign-in -----------------------------------------------------------------------------


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("pages.documents"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "POST":
        user = USERS.get(request.form.get("user", ""))
        if user is None:
            flash("Pick one of the demo users.", "error")
            return render_template("login.html"), 400
        session["user"] = user.id
        flash(f"Signed in as {user.name}.", "info")
        target = request.form.get("next") or ""
        local = target.startswith("/") and not target.startswith("//") and "\\" not in target
        return redirect(target if local else url_for("pages.documents"))
    return render_template("login.html", next=request.args.get("next", ""))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    session.pop("user", None)
    flash("Signed out.", "info")
    return redirect(url_for("pages.documents"))


# -- documents (content locks: <path>/@lock) ---------------------------------------------


def get_document(slug: str) -> Document:
    document = db.session.query(Document).filter_by(slug=slug).one_or_none()
    if document is None:
        abort(404)
    return document


@bp.get("/docs")
def documents() -> str:
    docs = db.session.query(Document).order_by(Document.title).all()
    live = {lock.resource: lock for lock in locking.locks("/docs")}
    return render_template("documents.html", documents=docs, locks=live)


@bp.route("/docs/<slug>", methods=["GET", "PATCH"])
def document(slug: str) -> Any:
    document = db.session.query(Document).filter_by(slug=slug).one_or_none()
    if request.method == "PATCH":
        return save_document(document, slug)
    if document is None:
        if wants_json():
            return api_error(404, f"There is no document /docs/{slug}.")
        abort(404)
    lock = locking.get(document.path)
    if wants_json():
        return jsonify(document=document.to_json(), lock=lock_json(lock))
    return render_template(
        "document.html", document=document, lock=lock, since=since(lock) if lock else None
    )


def save_document(document: Document | None, slug: str) -> Response:
    # The guard already refused a locked document without a token (403) and a stale token
    # (412); what is left is a write with the right token, or with no lock at all.
    if document is None:
        return api_error(404, f"There is no document /docs/{slug}.")
    user = current_user()
    if user is None:
        return api_error(401, "Sign in to edit documents.")
    lock = current_lock
    if not lock:  # a proxy: test its truth, never `is None`
        return api_error(428, no_lock_message(document.path, f"POST {document.path}/@lock"))
    body = json_body({"title": str, "body": str})
    if isinstance(body, str):
        return api_error(400, body)
    title = body.get("title", document.title).strip()
    if not title:
        return api_error(400, "The title must not be empty.")
    # Re-check the lock in this transaction and hold it until the commit: a lease that ran
    # out (or a take-over) since the guard's check refuses the save with 412 instead of
    # writing over the next editor's work (docs/writes.rst).
    if can_hold(db.session):
        lock.hold(db.session)
    else:
        fence(document, lock)
    document.title = title[:200]
    document.body = body.get("body", document.body)
    document.revision += 1
    document.updated_at = now()
    document.updated_by = user.name
    document.lock_version = lock.version
    db.session.commit()
    return jsonify(document=document.to_json())


def fence(document: Document, lock: Lock) -> None:
    """Locks kept outside this database (``memory://``, a store of the host's own): refuse
    a save under an older grant than the document's last one, with a compare-and-set of
    its ``lock_version`` in this transaction (docs/writes.rst, fencing)."""
    table = Document.__table__
    fenced = fenced_update(table, lock.version, table.c.id == document.id)
    if cast(CursorResult[Any], db.session.execute(fenced)).rowcount == 0:
        db.session.rollback()
        raise LockLost(f"{document.path} was saved under a newer lock; reload before saving.")


@bp.get("/docs/<slug>/edit")
def edit_document(slug: str) -> Any:
    document = get_document(slug)
    user = current_user()
    if user is None:
        flash("Sign in to edit.", "error")
        return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
    stealable = request.args.get("stealable", "1") != "0"
    timeout = float(current_app.config["LOCKING_DEFAULT_TIMEOUT"])
    heartbeat = current_app.config.get("EXAMPLE_HEARTBEAT_SECONDS") or min(timeout / 3, 60)
    return render_template(
        "editor.html",
        document=document,
        stealable=stealable,
        heartbeat_ms=int(float(heartbeat) * 1000),
        admins=[u.id for u in USERS.values() if u.admin],
    )


def slugify(title: str) -> str:
    """A URL slug for ``title``: lower-case letters and digits, single dashes between
    words, none at either end, at most 60 characters; ``doc`` when nothing is left."""
    words = re.split(r"[^\w]+|_+", title.lower())
    slug = "-".join(word for word in words if word)[:60].rstrip("-")
    return slug or "doc"


@bp.post("/docs")
def new_document() -> ResponseReturnValue:
    user = current_user()
    if user is None:
        abort(401)
    title = (request.form.get("title") or "").strip()[:200]
    if not title:
        flash("Give the new document a title.", "error")
        return redirect(url_for("pages.documents"))
    base = slugify(title)
    slug, n = base, 1
    while db.session.query(Document).filter_by(slug=slug).first() is not None:
        n += 1
        slug = f"{base}-{n}"
    db.session.add(Document(slug=slug, title=title, body="", updated_by=user.name))
    db.session.commit()
    return redirect(url_for("pages.edit_document", slug=slug))


# -- all live locks ----------------------------------------------------------------------


@bp.get("/locks")
def locks() -> str:
    live = locking.locks()
    started = {lock.resource: since(lock) for lock in live}
    return render_template(
        "locks.html",
        locks=live,
        since=started,
        # For the live table: when each grant (resource and version) started.
        since_versions={f"{lock.resource} {lock.version}": started[lock.resource] for lock in live},
        activity=recent(),
    )


@bp.post("/locks/release")
def release_lock() -> ResponseReturnValue:
    user = current_user()
    if user is None or not user.admin:
        abort(403)
    resource = request.form.get("resource", "")
    try:
        ended = locking.release(resource, owner=user, force=True)
    except LockingError as error:
        flash(f"Could not release {resource}: {error}", "error")
    else:
        if ended is None:
            flash(f"{resource} was not locked any more.", "info")
        else:
            holder = ended.owner.name if ended.owner else "anonymous"
            flash(f"Released {holder}'s lock on {resource}.", "info")
    return redirect(url_for("pages.locks"))


# -- jobs (job locks: /api/v1.0/companies/{c}/jobs/{j}/lock/) -----------------------------


@bp.get("/jobs")
def jobs() -> str:
    rows = db.session.query(Job).order_by(Job.company_id, Job.id).all()
    live = {lock.resource: lock for lock in locking.locks("/api/v1.0/companies")}
    return render_template("jobs.html", jobs=rows, locks=live)


@bp.get("/jobs/<int:company_id>/<int:job_id>")
def job_page(company_id: int, job_id: int) -> str:
    job = db.session.get(Job, (company_id, job_id))
    if job is None:
        abort(404)
    return render_template("job.html", job=job, statuses=JOB_STATUSES)


@bp.route("/api/v1.0/companies/<int:company_id>/jobs/<int:job_id>", methods=["GET", "PATCH"])
def job_api(company_id: int, job_id: int) -> Response:
    job = db.session.get(Job, (company_id, job_id))
    if job is None:
        return api_error(404, f"Company {company_id} has no job {job_id}.")
    if request.method == "GET":
        # The holder's own GET includes the token, so their page finds its lock again
        # after a reload (flask-locking shows a token to its owner only).
        return jsonify(job=job.to_json(), lock=lock_json(live_lock(job.path, current_user())))
    user = current_user()
    if user is None:
        return api_error(401, "Sign in to edit jobs.")
    lock = current_lock  # the guard answered 423 (locked) / 412 (stale) already
    if not lock:  # a proxy: test its truth, never `is None`
        return api_error(428, no_lock_message(job.path, f"POST {job.path}/lock/"))
    body = json_body({"status": str, "notes": str})
    if isinstance(body, str):
        return api_error(400, body)
    status = body.get("status", job.status)
    if status not in JOB_STATUSES:
        return api_error(400, f"status must be one of: {', '.join(JOB_STATUSES)}.")
    job.status = status
    job.notes = body.get("notes", job.notes)
    job.updated_by = user.name
    db.session.commit()
    return jsonify(job=job.to_json())


@locking.job_exists
def job_exists(company_id: int, job_id: int) -> bool:
    """Tells the job-lock dialect which jobs exist (it answers 404 for the others)."""
    return db.session.get(Job, (company_id, job_id)) is not None


# -- reference data (JWT reference locks: /api/v2/clients/{id}/reference/lock) -----------


def reference_error(code: int, message: str, details: str) -> Response:
    """The error body of the reference API (the same as the reference-lock dialect's)."""
    response = jsonify(status="error", code=code, message=message, details=details)
    response.status_code = code
    if code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@bp.get("/reference")
def reference_index() -> str:
    rows = db.session.query(Client).order_by(Client.id).all()
    live = {lock.resource: lock for lock in locking.locks("/api/v2/clients")}
    return render_template("reference.html", clients=rows, locks=live)


@bp.get("/reference/<int:client_id>")
def reference_page(client_id: int) -> Any:
    client = db.session.get(Client, client_id)
    if client is None:
        abort(404)
    user = current_user()
    if user is None:
        flash("Sign in to get a token for the reference-data API.", "error")
        return redirect(url_for("pages.login", next=request.path))
    return render_template("reference_client.html", client=client, jwt=mint_jwt(user))


@bp.route("/api/v2/clients/<int:client_id>/reference", methods=["GET", "PATCH"])
def reference_api(client_id: int) -> Response:
    try:
        user = user_from_bearer(request.headers.get("Authorization"))
    except AuthenticationRequired as error:
        return reference_error(401, "Authentication failed", error.detail)
    if user is None:
        return reference_error(401, "Authentication failed", "JWT token not found")
    client = db.session.get(Client, client_id)
    if client is None:
        return reference_error(404, "Not found", f"There is no client {client_id}.")
    if request.method == "GET":
        return jsonify(client=client.to_json(), lock=lock_json(live_lock(client.path, user)))
    lock = current_lock  # the guard answered 409 (locked or stale) already
    if not lock:  # a proxy: test its truth, never `is None`
        return reference_error(
            428, "Lock required", no_lock_message(client.path, f"POST {client.path}/lock")
        )
    body = json_body({"reference": str})
    if isinstance(body, str):
        return reference_error(400, "Bad request", body)
    client.reference = body.get("reference", client.reference)
    client.updated_by = user.name
    db.session.commit()
    return jsonify(client=client.to_json())
