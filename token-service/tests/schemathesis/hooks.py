"""Schemathesis hooks for the token service's run (tests/api/openapi.rs):
a check that a refused request (any 4xx or 5xx answer) wrote nothing.
Before each call, the whole store (every table of the SQLite file named by
TS_DB_PATH, read-only) is fingerprinted; after a refused call, it must be
the same."""

import hashlib
import os
import sqlite3

import schemathesis

TABLES = ["apps", "access_tokens", "token_attributes", "authorization_codes",
          "code_attributes", "changes", "change_horizon", "schema_migrations",
          "api_products", "app_products"]

_before = {"print": None}


def fingerprint():
    path = os.environ["TS_DB_PATH"]
    digest = hashlib.sha256()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        for table in TABLES:
            for row in db.execute(f"SELECT * FROM {table} ORDER BY 1"):
                digest.update(repr(row).encode())
            digest.update(b"|")
    return digest.hexdigest()


@schemathesis.hook
def before_call(context, case, kwargs):
    _before["print"] = fingerprint()


@schemathesis.check
def refused_request_writes_nothing(ctx, response, case):
    """A refused request (4xx or 5xx) changes nothing in the store."""
    if response.status_code >= 400 and _before["print"] is not None:
        if fingerprint() != _before["print"]:
            raise AssertionError(
                f"a refused request ({response.status_code}) changed the store"
            )
