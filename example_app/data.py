"""Demo data for an empty database."""

from __future__ import annotations

from .extensions import db
from .models import Client, Document, Job

DOCUMENTS = [
    (
        "welcome",
        "Welcome",
        (
            "This wiki shows flask-locking at work.\n\nOpen a page's editor as Alice and the same "
            "page as Bob in another browser: Bob sees who is editing and until when, and cannot "
            "save over Alice's work."
        ),
    ),
    (
        "release-checklist",
        "Release checklist",
        "1. Bump the version.\n2. Update the changelog.\n3. Tag the release.\n4. Announce it.",
    ),
    (
        "meeting-notes",
        "Meeting notes",
        (
            "Monday: agreed to lock pages while editing.\n\n"
            "Tuesday: agreed that admins may take over any lock."
        ),
    ),
]

JOBS = [
    (1, 101, "Replace the boiler", "open"),
    (1, 102, "Paint the hallway", "in progress"),
    (2, 201, "Audit the accounts", "open"),
]

CLIENTS = [
    (1, "Acme Corp", "currency: EUR\npayment terms: 30 days\nvat: 21%"),
    (2, "Globex", "currency: USD\npayment terms: 45 days\nvat: 0%"),
]


def seed() -> None:
    """Insert the demo rows of each table that is still empty."""
    if db.session.query(Document).first() is None:
        db.session.add_all(
            Document(slug=slug, title=title, body=body, updated_by="seed")
            for slug, title, body in DOCUMENTS
        )
    if db.session.query(Job).first() is None:
        db.session.add_all(
            Job(company_id=c, id=j, title=title, status=status, notes="")
            for c, j, title, status in JOBS
        )
    if db.session.query(Client).first() is None:
        db.session.add_all(
            Client(id=i, name=name, reference=reference) for i, name, reference in CLIENTS
        )
    db.session.commit()
