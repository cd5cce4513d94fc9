"""The rule engine: purpose limitation for job specs, and retention due dates (pure).

A job spec is data a tenant submits: ``kind`` (bench | train), ``purpose``, ``model``,
``split``, ``trainer``, ``params``. Default deny: a key the kind does not take is
refused (a benchmark takes no parameters at all: its protocol is fixed, so nothing in
a spec can turn it into a search). It is refused when its purpose is forbidden, not
allowed, or not granted to the tenant; when its kind does not serve its purpose; and
when any key or value of it names a 1:N marker (gallery, search, top_k, track, ...),
whatever purpose it declares: the red line the documented lab's critics drew. The word
check is a first filter only, on normalised text (:func:`normalise`: NFKC, case fold,
default-ignorable characters removed, confusable letters folded to Latin, separators
split), so that spelling cannot walk around it. A training job must name a trainer the
policy registers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from enclave_policy._load import GovernancePolicy

KIND_PURPOSE = {"bench": "verify_1to1", "train": "train"}
KIND_KEYS = {
    "bench": frozenset({"kind", "purpose", "model", "split"}),
    "train": frozenset({"kind", "purpose", "model", "split", "trainer", "params"}),
}
_WORD = re.compile(r"[a-z]+|[0-9]+")
# Letters of other scripts that look like Latin ones (after NFKC and case folding),
# after Unicode's confusables.txt (the "ma" table) for the letters of facelab's markers.
_CONFUSABLE = str.maketrans(
    {
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
        "ј": "j", "ѕ": "s", "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ɡ": "g",
        "ɩ": "i", "ʀ": "r", "ո": "n", "ս": "u", "α": "a", "ε": "e", "ι": "i", "κ": "k",
        "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ѡ": "w", "ℓ": "l",
        "ı": "i", "ȷ": "j", "ß": "ss", "ø": "o", "ł": "l", "đ": "d", "ħ": "h",
        "ɑ": "a", "ꞡ": "g", "ɢ": "g", "ʟ": "l", "ʏ": "y", "ɴ": "n", "ʜ": "h",
        "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɪ": "i", "ᴊ": "j",
        "ᴋ": "k", "ᴍ": "m", "ᴏ": "o", "ᴘ": "p", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v",
        "ᴡ": "w", "ᴢ": "z", "ƚ": "l", "ɫ": "l", "ɭ": "l", "ʋ": "u", "ɛ": "e",
    }
)  # fmt: skip
_IGNORABLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
                        "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f"
                        "\ufeff\uffa0\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")  # fmt: skip


@dataclass(frozen=True)
class RuleDecision:
    allowed: bool
    reason: str
    # a short code from a fixed list (the audit log records it; ``reason`` may quote
    # what the tenant wrote in its spec, so it goes to the tenant only)
    code: str = ""


def _strings(obj: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield f"{where}{k} (key)", str(k)
            yield from _strings(v, f"{where}{k}.")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{where}{i}.")
    elif isinstance(obj, str):
        yield where.rstrip("."), obj


def normalise(text: str) -> list[str]:
    """The words of ``text`` as the marker check sees them: NFKC, full case folding,
    default-ignorable characters (soft hyphen, zero-width joiners, variation selectors)
    removed, confusable letters folded to Latin, diacritics dropped, then split on
    anything that is not a letter or a digit and between letters and digits
    (``camelCase`` is split too, before folding)."""
    import unicodedata

    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _IGNORABLE.sub("", text).translate(_CONFUSABLE)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _WORD.findall(text)


def _marker_hit(words: list[str], marker: list[str]) -> bool:
    """``marker`` (its words) occurs in ``words``: as a run of words, as their
    concatenation, or one word with a plural or an inflection (``galleries``,
    ``searching``, ``ranked``)."""
    joined = "".join(marker)
    n = len(marker)
    for i in range(len(words)):
        for span in range(1, 4):
            w = "".join(words[i : i + span])
            if w == joined:
                return True
            if n == 1 and span == 1 and len(joined) >= 4 and _inflected(w, joined):
                return True
    return False


def _inflected(word: str, stem: str) -> bool:
    if not word.startswith(stem[:-1]):
        return False
    rest = word[len(stem) :] if word.startswith(stem) else None
    if rest is not None and rest in ("", "s", "es", "ed", "er", "ers", "ing", "ings", "ion"):
        return True
    # gallery -> galleries, identify -> identified / identification
    return stem.endswith("y") and word[len(stem) - 1 :] in ("ies", "ied", "ication", "ications")


def one_to_n_marker(spec: Mapping[str, Any], markers: tuple[str, ...]) -> tuple[str, str] | None:
    """(marker, where) of the first 1:N marker in the spec's keys and values, after
    :func:`normalise` of both."""
    norm = [(m, normalise(m)) for m in markers]
    for where, text in _strings(spec):
        words = normalise(text)
        for m, mw in norm:
            if mw and _marker_hit(words, mw):
                return m, where
    return None


def _bad_param(params: Any, declared: Mapping[str, str]) -> str:
    """Why ``params`` breaks the trainer's declaration, or "" (see [jobs] trainer_params)."""
    import math

    if not isinstance(params, Mapping):
        return "params must be an object"
    for k, v in params.items():
        kind = declared.get(k)
        if kind is None:
            return f"takes no parameter {str(k)[:40]!r}"
        if kind == "number" and not (
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        ):
            return f"parameter {k!r} must be a finite number"
        if kind == "flag" and not isinstance(v, bool):
            return f"parameter {k!r} must be true or false"
        if kind == "text" and not (
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        ):
            return f"parameter {k!r} must be text"
    return ""


def check_job(gov: GovernancePolicy, tenant: str, spec: Mapping[str, Any]) -> RuleDecision:
    purpose = spec.get("purpose")
    kind = spec.get("kind")
    if not isinstance(purpose, str) or not isinstance(kind, str):
        return RuleDecision(
            False, "the job spec must name its kind and purpose", "no-kind-or-purpose"
        )
    if purpose in gov.forbidden_purposes:
        return RuleDecision(
            False,
            f"purpose {purpose!r} is forbidden by the policy ([purposes] forbidden)",
            "purpose-forbidden",
        )
    if purpose not in gov.allowed_purposes:
        return RuleDecision(
            False, f"purpose {purpose!r} is not an allowed purpose", "purpose-not-allowed"
        )
    if purpose not in gov.tenant(tenant).purposes:
        return RuleDecision(
            False,
            f"tenant {tenant!r} is not granted purpose {purpose!r}",
            "purpose-not-granted",
        )
    if KIND_PURPOSE.get(kind) != purpose:
        return RuleDecision(
            False, f"a {kind!r} job does not serve purpose {purpose!r}", "kind-purpose-mismatch"
        )

    hit = one_to_n_marker(spec, gov.forbidden_markers)
    if hit is not None:
        return RuleDecision(
            False,
            f"the job asks for 1:N search ({hit[0]!r} in {hit[1]}), "
            "which the policy forbids whatever purpose is declared",
            "one-to-n",
        )
    extra = sorted(str(k) for k in spec if k not in KIND_KEYS[kind])
    if extra:
        return RuleDecision(
            False,
            f"a {kind!r} job takes no {extra[0]!r} (it takes {', '.join(sorted(KIND_KEYS[kind]))})",
            "unknown-key",
        )
    if kind == "train" and spec.get("trainer") not in gov.trainers:
        return RuleDecision(
            False,
            f"trainer {spec.get('trainer')!r} is not registered in [jobs] trainers",
            "trainer-not-registered",
        )
    if kind == "train":
        bad = _bad_param(spec.get("params", {}), gov.trainer_params.get(spec["trainer"], {}))
        if bad:
            return RuleDecision(False, f"trainer {spec['trainer']!r}: {bad}", "bad-params")
    return RuleDecision(True, f"{kind} for {purpose}, granted to {tenant}")
