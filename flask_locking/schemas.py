"""Marshmallow schemas of every body the lock endpoints read and write (extra ``[openapi]``).

They describe the wire format for the OpenAPI document (:mod:`flask_locking.openapi`) and
can load request bodies the same way the dialects check them::

    LockRequestSchema().load({"stealable": False, "timeout": 600})

The dialects themselves validate with :mod:`flask_locking.dialects.body` (no marshmallow
needed at run time); the tests check that both accept and refuse the same bodies.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate


class StrictBool(fields.Boolean):
    """A JSON ``true``/``false`` only (marshmallow's Boolean also takes ``"yes"``, ``1``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Must be true or false.")
        return value


class WholeSeconds(fields.Integer):
    """A timeout in whole seconds, at least 1 (no bools, no fractions, no strings)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validate", validate.Range(min=1))
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise ValidationError("Must be a whole number of seconds.")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return int(super()._deserialize(value, attr, data, **kwargs))


# -- requests (unknown fields are refused: additionalProperties false) -------------------


class LockRequestSchema(Schema):
    """Body of a lock request (``POST``); every field is optional."""

    class Meta:
        unknown = RAISE

    stealable = StrictBool(
        metadata={"description": "Whether others may force-release the lock (default true)."}
    )
    timeout = WholeSeconds(
        metadata={"description": "Seconds until the lock expires unless refreshed."}
    )


class RefreshRequestSchema(Schema):
    """Body of a refresh (``PATCH .../@lock``); optional."""

    class Meta:
        unknown = RAISE

    timeout = WholeSeconds(metadata={"description": "A new timeout, in seconds."})


class ReleaseRequestSchema(Schema):
    """Body of a release (``DELETE``); optional."""

    class Meta:
        unknown = RAISE

    force = StrictBool(
        metadata={
            "description": "Release someone else's lock (a steal; needs permission for a "
            "non-stealable lock)."
        }
    )


# -- responses (extra properties allowed, for forward compatibility) ---------------------


class LockSchema(Schema):
    """The lock JSON every dialect returns. ``token`` only for the lock's owner."""

    class Meta:
        unknown = INCLUDE

    locked = fields.Boolean(required=True, metadata={"enum": [True]})
    stealable = fields.Boolean(required=True)
    timeout = fields.Float(required=True, metadata={"description": "Seconds."})
    time = fields.Float(
        required=True, metadata={"description": "Epoch seconds of the last lock or refresh."}
    )
    created = fields.DateTime(
        required=True, metadata={"description": "The same instant as time, ISO 8601."}
    )
    expires = fields.DateTime(required=True, metadata={"description": "ISO 8601."})
    creator = fields.String(required=True, allow_none=True)
    creator_name = fields.String(required=True, allow_none=True)
    creator_url = fields.String(required=True, allow_none=True)
    name = fields.String(
        required=True,
        metadata={"enum": ["plone.locking.stealable", "plone.locking.unstealable"]},
    )
    resource = fields.String(required=True, metadata={
        "description": "The locked path (canonical), after its namespace in apps that route by "
        "host or are mounted under a SCRIPT_NAME: [acme.example.com]/docs/1."
    })
    depth = fields.Raw(
        required=True,
        metadata={
            "enum": [0, "infinity"],
            "description": "0, or infinity: the lock also covers every path below resource.",
        },
    )
    version = fields.Integer(
        required=True,
        metadata={"minimum": 1, "description": "Fencing counter: grows at every new grant."},
    )
    token = fields.String(
        metadata={"description": "The lock token; only in the owner's responses."}
    )


class UnlockedSchema(Schema):
    """What every dialect answers for a resource that is not locked."""

    class Meta:
        unknown = INCLUDE

    locked = fields.Boolean(required=True, metadata={"enum": [False]})
    stealable = fields.Boolean(required=True, metadata={"enum": [True]})


class ErrorDetailSchema(Schema):
    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True, metadata={"example": "Conflict"})
    message = fields.String(required=True)


class ErrorSchema(Schema):
    """Errors of content and job locks; a conflict also carries the holder's lock."""

    class Meta:
        unknown = INCLUDE

    error = fields.Nested(ErrorDetailSchema, required=True)
    lock = fields.Nested(LockSchema, metadata={"description": "The holder (no token)."})


class EnvelopeErrorSchema(Schema):
    """Errors of reference-data locks."""

    class Meta:
        unknown = INCLUDE

    status = fields.String(required=True, metadata={"enum": ["error"]})
    code = fields.Integer(required=True)
    message = fields.String(required=True, metadata={"example": "Locking conflict"})
    details = fields.String(required=True)
