"""A job's summary is data from hostile code: bounded, typed, and never tenant data.

The summary a job returns goes into the signed audit log, which outlives the tenant's
destruction. So it may hold only a few named numbers: at most ``MAX_KEYS`` keys, each
a short ``[a-z0-9_.-]`` name, each value a finite number, a boolean or null. Strings
(names, pseudonyms, base64), lists and nested objects (pixels, templates) are not
reduced or truncated but refused whole: the audit entry then holds the reason and the
SHA-256 of what the job returned, never the content.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

MAX_KEYS = 16
_KEY = re.compile(r"[a-z][a-z0-9_.\-]{0,47}")


def clean_summary(value: object) -> tuple[dict, str]:
    """(summary fit for the audit log, "" or the reason it was refused).

    A refused summary comes back as ``{"refused_sha256": <digest of its JSON>}``.
    """
    try:
        raw = json.dumps(value, sort_keys=True, default=str).encode()
    except (TypeError, ValueError):
        raw = repr(type(value)).encode()
    digest = {"refused_sha256": hashlib.sha256(raw).hexdigest()}
    if value is None:
        return {}, ""
    if not isinstance(value, dict):
        return digest, f"summary is a {type(value).__name__}, not an object of numbers"
    if len(value) > MAX_KEYS:
        return digest, f"summary has {len(value)} keys (at most {MAX_KEYS})"
    for k, v in value.items():
        if not isinstance(k, str) or not _KEY.fullmatch(k):
            return digest, "a summary key is not a short lower-case name"
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int) and abs(v) < 2**53:
            continue
        if isinstance(v, float) and math.isfinite(v):
            continue
        return digest, f"summary value of {k!r} is not a finite number, boolean or null"
    return dict(value), ""
