"""CSRF tokens for the demo's HTML forms: sign in, sign out, new document, admin release.

A synchronizer token, small enough to read in one go (Flask-WTF's ``CSRFProtect`` does the
same for a real app): one random value per session, rendered into every form as a hidden
``csrf_token`` field, compared in constant time when the form is posted. Every ``POST`` to
the pages blueprint is a form post and needs it. The pages' scripts need none: they call
the JSON APIs with ``PATCH``/``DELETE`` or JSON bodies, which a cross-site page cannot send
without a CORS preflight, and the lock endpoints refuse form bodies with 415 (see
docs/identity.rst, "Cookies and cross-site requests").
"""

from __future__ import annotations

import hmac
import secrets

from flask import Blueprint, Flask, abort, request, session

#: The form field (and session key) that carries the token.
FIELD = "csrf_token"


def csrf_token() -> str:
    """This session's token (made on first use); templates call it in every form."""
    token = session.get(FIELD)
    if not isinstance(token, str):
        token = session[FIELD] = secrets.token_urlsafe(32)
    return token


def check_form_token(blueprint: str) -> None:
    """A ``POST`` to ``blueprint`` without this session's token is refused with 400 before
    the view runs."""
    if request.method != "POST" or request.blueprint != blueprint:
        return
    expected = session.get(FIELD)
    sent = request.form.get(FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, "The form is missing its CSRF token or it has expired: reload the page.")


def init_csrf(app: Flask, pages: Blueprint) -> None:
    """Make ``csrf_token()`` available to templates and check it on the pages' forms (an
    app hook: the blueprint is shared by every app that ``create_app`` builds)."""
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(lambda: check_form_token(pages.name))
