"""Sign-In with Ethereum (EIP-4361) messages: a strict parser, a renderer and the relying-party checks.

The grammar is the EIP's ABNF, line by line::

    [ scheme "://" ] domain " wants you to sign in with your Ethereum account:" LF
    address LF
    LF
    [ statement LF ]
    LF
    "URI: " uri LF
    "Version: " version LF
    "Chain ID: " chain-id LF
    "Nonce: " nonce LF
    "Issued At: " issued-at
    [ LF "Expiration Time: " expiration-time ]
    [ LF "Not Before: " not-before ]
    [ LF "Request ID: " request-id ]
    [ LF "Resources:" *( LF "- " URI ) ]

Consequences of following it to the letter, all deliberate:

* Without a statement the address is followed by *two* empty lines; with one it is
  ``address, "", statement, "", "URI: ..."``. An empty statement (``""``) is a third form, three empty
  lines, and is kept apart from "no statement" (``None``).
* No trailing line feed, no ``CR``, no unknown, repeated or reordered lines.
* ``domain`` is an RFC 3986 authority (``[userinfo "@"] host [":" port]``); we additionally require
  the host to be non-empty (the EIP calls the domain REQUIRED).
* ``request-id`` is ``*pchar`` and so may be empty: ``""`` differs from ``None``.
* ``Resources:`` followed by no item parses to ``()``, which renders without the ``Resources:`` line.

Stricter than the ABNF, each for a stated reason:

* The address must be EIP-55 checksummed (``eth_utils.is_checksum_address``); an all-lowercase or
  wrongly cased address is rejected. The EIP says SHOULD; every wallet renders the checksum form, and
  accepting the lowercase form would let two texts name one account.
* A leap second (``:60``) is rejected: ``datetime`` cannot hold it. Fractions beyond microseconds are
  truncated to microseconds.
* ``chain-id`` must fit in 256 bits, the width of the CHAINID opcode.
* A message longer than :data:`MAX_MESSAGE_LENGTH` characters is rejected before parsing.

Every failure is a :class:`~audifi_core.errors.ValidationError` with ``fields={"message": why}``.
Signature recovery is not done here (``audifi_core`` never imports eth_account): an adapter recovers
the signer of the *original text* and the caller compares it with :attr:`SiweMessage.address`.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
from eth_utils import is_checksum_address

from audifi_core.errors import ValidationError

__all__ = [
    "SiweMessage",
    "parse_siwe_message",
    "ISSUED_AT_SKEW",
    "MAX_MESSAGE_LENGTH",
]

#: How far in the future ``issued_at`` may lie when checked (client clocks run fast).
ISSUED_AT_SKEW = timedelta(minutes=5)
#: Longest message text parsed at all; a guard, far above any real sign-in message.
MAX_MESSAGE_LENGTH = 16_384

_HEADER_SUFFIX = " wants you to sign in with your Ethereum account:"
_MAX_CHAIN_ID = 2**256 - 1

# ---------------------------------------------------------------- RFC 3986 pieces (ASCII only)
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
_USERINFO = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*"
_REG_NAME = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*"
_IP_FUTURE = rf"v[0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+"
# IPv6 is matched loosely here and checked with ``ipaddress`` afterwards.
_IP_LITERAL = rf"\[(?:(?P<ipv6>[0-9A-Fa-f:.]+)|{_IP_FUTURE})\]"
_AUTHORITY = rf"(?:{_USERINFO}@)?(?P<host>{_IP_LITERAL}|{_REG_NAME})(?::[0-9]*)?"
_SEGMENT = rf"{_PCHAR}*"
_SEGMENT_NZ = rf"{_PCHAR}+"
_HIER_PART = (
    rf"(?://{_AUTHORITY}(?:/{_SEGMENT})*"  # "//" authority path-abempty
    rf"|/(?:{_SEGMENT_NZ}(?:/{_SEGMENT})*)?"  # path-absolute
    rf"|{_SEGMENT_NZ}(?:/{_SEGMENT})*"  # path-rootless
    r"|)"  # path-empty
)
_QUERY = rf"(?:{_PCHAR}|[/?])*"

_SCHEME_RE = re.compile(_SCHEME)
_AUTHORITY_RE = re.compile(_AUTHORITY)
_URI_RE = re.compile(rf"{_SCHEME}:{_HIER_PART}(?:\?{_QUERY})?(?:#{_QUERY})?")
_ADDRESS_RE = re.compile(r"0x[0-9A-Fa-f]{40}")
_STATEMENT_RE = re.compile(rf"[{_UNRESERVED}:/?#\[\]@{_SUB_DELIMS} ]*")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}")
_CHAIN_ID_RE = re.compile(r"[0-9]{1,78}")
_REQUEST_ID_RE = re.compile(rf"{_PCHAR}*")
# RFC 3339 date-time; "T" and "Z" are case-insensitive there (RFC 5234 literals).
_DATE_TIME_RE = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})[Tt]"
    r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})(?:\.(?P<frac>[0-9]+))?"
    r"(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))"
)


def _invalid(reason: str) -> ValidationError:
    return ValidationError("Invalid sign-in message", fields={"message": reason})


def _show(value: str, limit: int = 48) -> str:
    """A short, safe rendering of an offending value for an error message."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _host_ok(match: re.Match[str]) -> bool:
    ipv6 = match.group("ipv6")
    if ipv6 is None:
        return True
    try:
        ipaddress.IPv6Address(ipv6)
    except ValueError:
        return False
    return True


def _is_uri(value: str) -> bool:
    m = _URI_RE.fullmatch(value)
    return m is not None and _host_ok(m)


# ---------------------------------------------------------------- attrs validators


def _check_scheme(_inst: Any, _attr: Any, value: str | None) -> None:
    if value is not None and not (isinstance(value, str) and _SCHEME_RE.fullmatch(value)):
        raise _invalid(f"scheme is not an RFC 3986 scheme: {_show(str(value))}")


def _check_domain(_inst: Any, _attr: Any, value: str) -> None:
    m = _AUTHORITY_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None or not m.group("host") or not _host_ok(m):
        raise _invalid(f"domain is not an RFC 3986 authority: {_show(str(value))}")


def _check_address(_inst: Any, _attr: Any, value: str) -> None:
    if not (isinstance(value, str) and _ADDRESS_RE.fullmatch(value)):
        raise _invalid(f"address is not 0x and 40 hex digits: {_show(str(value))}")
    if not is_checksum_address(value):
        raise _invalid(f"address is not EIP-55 checksummed: {value}")


def _check_statement(_inst: Any, _attr: Any, value: str | None) -> None:
    if value is not None and not (isinstance(value, str) and _STATEMENT_RE.fullmatch(value)):
        raise _invalid("statement has a character outside RFC 3986 reserved/unreserved and space")


def _check_uri(_inst: Any, _attr: Any, value: str) -> None:
    if not (isinstance(value, str) and _is_uri(value)):
        raise _invalid(f"uri is not an RFC 3986 URI: {_show(str(value))}")


def _check_version(_inst: Any, _attr: Any, value: str) -> None:
    if value != "1":
        raise _invalid(f"version must be '1', not {_show(str(value))}")


def _check_chain_id(_inst: Any, _attr: Any, value: int) -> None:
    if type(value) is not int or not 0 <= value <= _MAX_CHAIN_ID:
        raise _invalid(f"chain id must be an integer from 0 to 2**256-1, not {_show(str(value))}")


def _check_nonce(_inst: Any, _attr: Any, value: str) -> None:
    if not (isinstance(value, str) and _NONCE_RE.fullmatch(value)):
        raise _invalid("nonce must be at least 8 ASCII letters or digits")


def _check_datetime(_inst: Any, attr: attrs.Attribute, value: datetime | None) -> None:
    if value is None:
        if attr.name == "issued_at":
            raise _invalid("issued_at is required")
        return
    name = attr.name
    if not isinstance(value, datetime):
        raise _invalid(f"{name} must be a datetime")
    offset = value.utcoffset()
    if offset is None:
        raise _invalid(f"{name} must be timezone-aware")
    if offset % timedelta(minutes=1):
        raise _invalid(f"{name} has a UTC offset that is not whole minutes")


def _check_request_id(_inst: Any, _attr: Any, value: str | None) -> None:
    if value is not None and not (isinstance(value, str) and _REQUEST_ID_RE.fullmatch(value)):
        raise _invalid("request id has a character outside RFC 3986 pchar")


def _to_resources(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        raise _invalid("resources must be a sequence of URIs, not one string")
    items = tuple(value)
    for item in items:
        if not (isinstance(item, str) and _is_uri(item)):
            raise _invalid(f"resource is not an RFC 3986 URI: {_show(str(item))}")
    return items


# ---------------------------------------------------------------- datetimes


def _parse_datetime(value: str, label: str) -> datetime:
    m = _DATE_TIME_RE.fullmatch(value)
    if m is None:
        raise _invalid(f"{label} is not an RFC 3339 date-time: {_show(value)}")
    second = int(m["s"])
    if second == 60:
        raise _invalid(f"{label}: leap seconds are not supported")
    micro = int((m["frac"] or "")[:6].ljust(6, "0"))
    if m["z"]:
        tz = UTC
    else:
        oh, om = int(m["oh"]), int(m["om"])
        if oh > 23 or om > 59:
            raise _invalid(f"{label} has an invalid UTC offset: {_show(value)}")
        delta = timedelta(hours=oh, minutes=om)
        tz = timezone(-delta if m["sign"] == "-" else delta)
    try:
        return datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]),
                        second, micro, tzinfo=tz)
    except ValueError:
        raise _invalid(f"{label} is not a real date and time: {_show(value)}") from None


def _format_datetime(value: datetime) -> str:
    text = (f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
            f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset()
    assert offset is not None
    if not offset:
        return text + "Z"
    sign = "-" if offset < timedelta(0) else "+"
    hours, minutes = divmod(abs(offset) // timedelta(minutes=1), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


# ---------------------------------------------------------------- the message


@attrs.frozen(kw_only=True)
class SiweMessage:
    """One EIP-4361 message; constructing it validates every field as the parser would.

    ``scheme`` is the optional ``scheme://`` prefix of the first line (``None`` when absent; the EIP
    then assumes ``https``).
    """

    domain: str = attrs.field(validator=_check_domain)
    address: str = attrs.field(validator=_check_address)
    statement: str | None = attrs.field(default=None, validator=_check_statement)
    uri: str = attrs.field(validator=_check_uri)
    version: str = attrs.field(default="1", validator=_check_version)
    chain_id: int = attrs.field(validator=_check_chain_id)
    nonce: str = attrs.field(validator=_check_nonce)
    issued_at: datetime = attrs.field(validator=_check_datetime)
    expiration_time: datetime | None = attrs.field(default=None, validator=_check_datetime)
    not_before: datetime | None = attrs.field(default=None, validator=_check_datetime)
    request_id: str | None = attrs.field(default=None, validator=_check_request_id)
    resources: tuple[str, ...] = attrs.field(default=(), converter=_to_resources)
    scheme: str | None = attrs.field(default=None, validator=_check_scheme)

    def to_text(self) -> str:
        """The exact EIP-4361 text of this message (no trailing line feed)."""
        origin = f"{self.scheme}://{self.domain}" if self.scheme is not None else self.domain
        lines = [origin + _HEADER_SUFFIX, self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines += [
            "",
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {_format_datetime(self.issued_at)}",
        ]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {_format_datetime(self.expiration_time)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {_format_datetime(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {r}" for r in self.resources]
        return "\n".join(lines)

    def check(self, *, domain: str, uri: str, chain_id: int, nonce: str, now: datetime,
              scheme: str | None = None) -> None:
        """Raise ValidationError unless this message is for us, now.

        ``domain``, ``uri``, ``chain_id`` and ``nonce`` must equal the message's exactly. A message
        that carries a scheme must carry ``scheme`` (by default the scheme of ``uri``); one without
        a scheme is bound by its domain alone. Time: ``now`` must be before ``expiration_time``, at
        or after ``not_before``, and ``issued_at`` may be at most :data:`ISSUED_AT_SKEW` ahead of
        ``now``. ``now`` must be timezone-aware (a naive one is a programming error: ValueError).
        """
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        if self.domain != domain:
            raise _invalid(f"domain {_show(self.domain)} is not {_show(domain)}")
        if self.scheme is not None:
            expected = scheme if scheme is not None else uri.partition(":")[0]
            if self.scheme.lower() != expected.lower():
                raise _invalid(f"scheme {_show(self.scheme)} is not {_show(expected)}")
        if self.uri != uri:
            raise _invalid(f"uri {_show(self.uri)} is not {_show(uri)}")
        if self.chain_id != chain_id:
            raise _invalid(f"chain id {self.chain_id} is not {chain_id}")
        if not hmac.compare_digest(self.nonce.encode(), nonce.encode()):
            raise _invalid("nonce does not match")
        if self.expiration_time is not None and now >= self.expiration_time:
            raise _invalid("message has expired")
        if self.not_before is not None and now < self.not_before:
            raise _invalid("message is not valid yet (not before)")
        if self.issued_at > now + ISSUED_AT_SKEW:
            raise _invalid("message is issued in the future")


# ---------------------------------------------------------------- the parser


class _Lines:
    """A cursor over the message's lines that names what it expected when it runs out."""

    def __init__(self, lines: list[str]):
        self._lines = lines
        self._i = 0

    def peek(self) -> str | None:
        return self._lines[self._i] if self._i < len(self._lines) else None

    def take(self, what: str) -> str:
        line = self.peek()
        if line is None:
            raise _invalid(f"message ends where {what} was expected")
        self._i += 1
        return line

    def tagged(self, tag: str) -> str:
        line = self.take(f"{tag.strip()!r}")
        if not line.startswith(tag):
            raise _invalid(f"line {self._i} must start with {tag!r}, found {_show(line)}")
        return line[len(tag):]

    def optional(self, tag: str) -> str | None:
        line = self.peek()
        if line is None or not line.startswith(tag):
            return None
        self._i += 1
        return line[len(tag):]

    def blank(self, where: str) -> None:
        line = self.take(f"an empty line {where}")
        if line != "":
            raise _invalid(f"line {self._i} must be empty ({where}), found {_show(line)}")

    @property
    def number(self) -> int:
        return self._i + 1


def parse_siwe_message(text: str) -> SiweMessage:
    """Parse EIP-4361 ``text`` exactly, or raise ValidationError(fields={"message": why})."""
    if not isinstance(text, str):
        raise _invalid("message must be text")
    if len(text) > MAX_MESSAGE_LENGTH:
        raise _invalid(f"message is longer than {MAX_MESSAGE_LENGTH} characters")
    cur = _Lines(text.split("\n"))

    header = cur.take("the header")
    if not header.endswith(_HEADER_SUFFIX):
        raise _invalid(f"first line must end with {_HEADER_SUFFIX.strip()!r}")
    origin = header[: -len(_HEADER_SUFFIX)]
    scheme: str | None
    scheme, sep, domain = origin.partition("://")
    if not sep:
        scheme, domain = None, origin

    address = cur.take("the address")
    cur.blank("after the address")
    first = cur.take("the statement or an empty line")
    statement: str | None
    if first == "":
        if cur.peek() == "":  # an empty statement: its line, then the blank after it
            cur.take("the blank line after the statement")
            statement = ""
        else:
            statement = None
    else:
        statement = first
        if first.startswith("URI: ") and cur.peek() != "":
            raise _invalid("without a statement the address must be followed by two empty lines")
        cur.blank("after the statement")

    uri = cur.tagged("URI: ")
    version = cur.tagged("Version: ")
    chain_text = cur.tagged("Chain ID: ")
    nonce = cur.tagged("Nonce: ")
    issued_text = cur.tagged("Issued At: ")
    expiration_text = cur.optional("Expiration Time: ")
    not_before_text = cur.optional("Not Before: ")
    request_id = cur.optional("Request ID: ")
    resources: list[str] = []
    if cur.peek() == "Resources:":
        cur.take("Resources:")
        while (line := cur.peek()) is not None and line.startswith("- "):
            resources.append(cur.take("a resource")[2:])
    if (rest := cur.peek()) is not None:
        raise _invalid(f"unexpected line {cur.number}: {_show(rest)}")

    if not _CHAIN_ID_RE.fullmatch(chain_text):
        raise _invalid(f"chain id is not 1 to 78 decimal digits: {_show(chain_text)}")
    issued_at = _parse_datetime(issued_text, "issued at")
    expiration_time = (None if expiration_text is None
                       else _parse_datetime(expiration_text, "expiration time"))
    not_before = None if not_before_text is None else _parse_datetime(not_before_text, "not before")

    return SiweMessage(
        scheme=scheme,
        domain=domain,
        address=address,
        statement=statement,
        uri=uri,
        version=version,
        chain_id=int(chain_text),
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expiration_time,
        not_before=not_before,
        request_id=request_id,
        resources=tuple(resources),
    )
