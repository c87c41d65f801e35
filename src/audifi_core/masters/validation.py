"""Input checks of the masters context, each failure a field of one ``VALIDATION_ERROR``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from audifi_core.errors import ValidationError

from .model import MAX_MINT_BATCH, MAX_TOTAL_SHARES, MasterMetadata, Money

__all__ = ["parse_metadata", "check_ipo", "check_count", "parse_wei", "parse_address", "IPO_MAX_DURATION",
           "START_TOLERANCE"]

_ISRC = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")
_CURRENCY = re.compile(r"^[a-z]{3}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
IPO_MAX_DURATION = timedelta(days=366)
START_TOLERANCE = timedelta(minutes=5)  # clock skew between a client and us


def _text(data: dict[str, Any], key: str, limit: int, fields: dict[str, str], *,
          required: bool = False) -> str | None:
    v = data.get(key)
    if v is None:
        if required:
            fields[f"metadata.{key}"] = "required"
        return None
    if not isinstance(v, str):
        fields[f"metadata.{key}"] = "expected a string"
        return None
    v = v.strip()
    if required and not v:
        fields[f"metadata.{key}"] = "must not be empty"
        return None
    if len(v) > limit:
        fields[f"metadata.{key}"] = f"at most {limit} characters"
        return None
    return v or None


def parse_metadata(data: Any) -> MasterMetadata:
    """``{title, description?, genre?, bpm?, isrc?}``; the ISRC is normalised (upper case, no hyphens)."""
    if not isinstance(data, dict):
        raise ValidationError("metadata must be a JSON object", fields={"metadata": "expected an object"})
    fields: dict[str, str] = {}
    title = _text(data, "title", 200, fields, required=True)
    description = _text(data, "description", 5000, fields)
    genre = _text(data, "genre", 100, fields)
    bpm = data.get("bpm")
    if bpm is not None and (isinstance(bpm, bool) or not isinstance(bpm, int) or not 1 <= bpm <= 1000):
        fields["metadata.bpm"] = "an integer from 1 to 1000"
        bpm = None
    isrc = _text(data, "isrc", 20, fields)
    if isrc is not None:
        isrc = isrc.replace("-", "").upper()
        if not _ISRC.match(isrc):
            fields["metadata.isrc"] = "not an ISRC (CC-XXX-YY-NNNNN)"
    if fields:
        raise ValidationError("Invalid metadata", fields=fields)
    assert title is not None
    return MasterMetadata(title=title, description=description, genre=genre, bpm=bpm, isrc=isrc)


def check_ipo(*, total_shares: int, price: Money, starts_at: datetime, ends_at: datetime,
              max_per_user: int | None, now: datetime) -> int:
    """Raise ``ValidationError`` naming each bad field; returns ``maxPerUser`` (default 10 %, at least 1)."""
    fields: dict[str, str] = {}
    if not 1 <= total_shares <= MAX_TOTAL_SHARES:
        fields["totalShares"] = f"from 1 to {MAX_TOTAL_SHARES}"
    if price.amount < 1:
        fields["pricePerShare.amount"] = "a positive integer (smallest currency unit)"
    elif price.amount > 10**12:
        fields["pricePerShare.amount"] = "too large"
    if not _CURRENCY.match(price.currency):
        fields["pricePerShare.currency"] = "a three-letter lower-case ISO 4217 code"
    if starts_at < now - START_TOLERANCE:
        fields["startsAt"] = "must not be in the past"
    if ends_at <= starts_at:
        fields["endsAt"] = "must be after startsAt"
    elif ends_at - starts_at > IPO_MAX_DURATION:
        fields["endsAt"] = "at most 366 days after startsAt"
    if max_per_user is None:
        max_per_user = max(1, total_shares // 10)
    elif not 1 <= max_per_user <= max(total_shares, 1):
        fields["maxPerUser"] = "from 1 to totalShares"
    if fields:
        raise ValidationError("Invalid IPO", fields=fields)
    return max_per_user


def check_count(count: int, limit: int = MAX_MINT_BATCH) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        raise ValidationError("Invalid count", fields={"count": f"an integer from 1 to {limit}"})


def parse_wei(value: Any, field: str = "amount") -> int:
    """A positive amount of wei given as a decimal string (an integer is accepted too)."""
    if isinstance(value, bool):
        raise ValidationError("Invalid amount", fields={field: "a decimal string of wei"})
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        n = int(value)
    else:
        raise ValidationError("Invalid amount", fields={field: "a decimal string of wei"})
    if not 0 < n < 2**128:
        raise ValidationError("Invalid amount", fields={field: "more than 0 and below 2^128 wei"})
    return n


def parse_address(value: Any, field: str = "address") -> str:
    """A 0x-prefixed 20-byte hex address (any case; compare lower-cased)."""
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ValidationError("Invalid address", fields={field: "a 0x-prefixed 20-byte hex address"})
    return value
