"""Redaction of secrets before anything reaches MLflow (params, tags, YAML artifacts)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"
_SECRET_KEY = re.compile(r"(^|[_.\-])(password|passwd|pwd|token|secret|key|api_?key|credentials?)($|[_.\-])", re.I)
_URI_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^/\s:@]*:)(?P<pw>[^@/\s]+)(?P<at>@)", re.I)


def is_secret_key(key: str) -> bool:
    """Whether the last part of a (dotted) key names a secret: ``db.password``, ``api_key``, ``hf_token``."""
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1]))


def redact_value(value: Any) -> Any:
    """Hide the password of any ``scheme://user:password@host`` inside a string value."""
    if isinstance(value, str):
        return _URI_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}{m['at']}", value)
    return value


def redact(tree: Any, key: str = "") -> Any:
    """A copy of a nested config with secret-looking keys' values and URI passwords replaced by ``***``."""
    if isinstance(tree, Mapping):
        return {k: redact(v, str(k)) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [redact(v, key) for v in tree]
    if key and is_secret_key(key) and tree is not None:
        return REDACTED
    return redact_value(tree)
