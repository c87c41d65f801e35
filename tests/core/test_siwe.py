"""EIP-4361 (Sign-In with Ethereum) parsing, rendering and relying-party checks."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audifi_core.auth.siwe import (
    ISSUED_AT_SKEW,
    MAX_MESSAGE_LENGTH,
    SiweMessage,
    parse_siwe_message,
)
from audifi_core.errors import ValidationError

ADDRESS = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
HEADER = " wants you to sign in with your Ethereum account:"

# The EIP's own examples (Examples section of EIP-4361), verbatim.
EIP_IMPLICIT_SCHEME = """example.com wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

I accept the ExampleOrg Terms of Service: https://example.com/tos

URI: https://example.com/login
Version: 1
Chain ID: 1
Nonce: 32891756
Issued At: 2021-09-30T16:25:24Z
Resources:
- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/
- https://example.com/my-web2-claim.json"""

EIP_EXPLICIT_PORT = EIP_IMPLICIT_SCHEME.replace("example.com wants", "example.com:3388 wants", 1)
EIP_EXPLICIT_SCHEME = "https://" + EIP_IMPLICIT_SCHEME

# The EIP's informal template with every optional field filled in.
ALL_FIELDS = """https://example.com:8443 wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

I accept the ExampleOrg Terms of Service: https://example.com/tos

URI: https://example.com/login
Version: 1
Chain ID: 137
Nonce: 32891756abcDEF
Issued At: 2021-09-30T16:25:24.123Z
Expiration Time: 2021-10-01T16:25:24+02:00
Not Before: 2021-09-30T16:25:24-05:30
Request ID: some_id@1:x
Resources:
- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/
- https://example.com/my-web2-claim.json"""

T0 = datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)


def lines_of(text: str) -> list[str]:
    return text.split("\n")


def minimal(**overrides: object) -> SiweMessage:
    fields: dict[str, object] = dict(domain="audifi.io", address=ADDRESS, uri="https://audifi.io",
                                     chain_id=1, nonce="abcdefgh1234", issued_at=T0)
    fields.update(overrides)
    return SiweMessage(**fields)  # type: ignore[arg-type]


def rejects(text: str) -> str:
    """Parse ``text``, expect a ValidationError on the 'message' field, return its reason."""
    with pytest.raises(ValidationError) as caught:
        parse_siwe_message(text)
    assert set(caught.value.fields) == {"message"}
    assert caught.value.status == 400
    return caught.value.fields["message"]


def replace_line(text: str, index: int, new: str) -> str:
    lines = lines_of(text)
    lines[index] = new
    return "\n".join(lines)


class TestEipExamples:
    def test_implicit_scheme_example_fields(self):
        """The EIP's implicit-scheme example parses to its fields."""
        m = parse_siwe_message(EIP_IMPLICIT_SCHEME)
        assert m.scheme is None
        assert m.domain == "example.com"
        assert m.address == ADDRESS
        assert m.statement == "I accept the ExampleOrg Terms of Service: https://example.com/tos"
        assert m.uri == "https://example.com/login"
        assert m.version == "1"
        assert m.chain_id == 1
        assert m.nonce == "32891756"
        assert m.issued_at == T0
        assert m.expiration_time is None and m.not_before is None and m.request_id is None
        assert m.resources == (
            "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
            "https://example.com/my-web2-claim.json",
        )

    def test_explicit_port_example(self):
        """The EIP's explicit-port example keeps the port in the domain."""
        m = parse_siwe_message(EIP_EXPLICIT_PORT)
        assert m.domain == "example.com:3388"
        assert m.scheme is None

    def test_explicit_scheme_example(self):
        """The EIP's explicit-scheme example splits the scheme from the domain."""
        m = parse_siwe_message(EIP_EXPLICIT_SCHEME)
        assert m.scheme == "https"
        assert m.domain == "example.com"

    @pytest.mark.parametrize("text", [EIP_IMPLICIT_SCHEME, EIP_EXPLICIT_PORT, EIP_EXPLICIT_SCHEME])
    def test_examples_render_back_verbatim(self, text):
        """Each EIP example renders back to exactly its own text."""
        assert parse_siwe_message(text).to_text() == text

    def test_all_optional_fields(self):
        """The template with every optional field parses to every field."""
        m = parse_siwe_message(ALL_FIELDS)
        assert m.scheme == "https"
        assert m.domain == "example.com:8443"
        assert m.chain_id == 137
        assert m.nonce == "32891756abcDEF"
        assert m.issued_at == datetime(2021, 9, 30, 16, 25, 24, 123000, tzinfo=UTC)
        assert m.expiration_time == datetime(2021, 10, 1, 14, 25, 24, tzinfo=UTC)
        assert m.expiration_time.utcoffset() == timedelta(hours=2)
        assert m.not_before == datetime(2021, 9, 30, 21, 55, 24, tzinfo=UTC)
        assert m.request_id == "some_id@1:x"
        assert len(m.resources) == 2

    def test_all_optional_fields_render_back(self):
        """The all-fields message renders back verbatim (offsets and milliseconds kept)."""
        assert parse_siwe_message(ALL_FIELDS).to_text() == ALL_FIELDS


class TestParse:
    def test_no_statement_means_two_empty_lines(self):
        """Without a statement the ABNF puts two empty lines after the address."""
        text = "\n".join(["audifi.io" + HEADER, ADDRESS, "", "", "URI: https://audifi.io",
                          "Version: 1", "Chain ID: 1", "Nonce: abcdefgh", "Issued At: 2021-09-30T16:25:24Z"])
        m = parse_siwe_message(text)
        assert m.statement is None
        assert m.to_text() == text

    def test_empty_statement_is_not_no_statement(self):
        """An empty statement (three empty lines) parses to '' and renders back the same."""
        text = "\n".join(["audifi.io" + HEADER, ADDRESS, "", "", "", "URI: https://audifi.io",
                          "Version: 1", "Chain ID: 1", "Nonce: abcdefgh", "Issued At: 2021-09-30T16:25:24Z"])
        m = parse_siwe_message(text)
        assert m.statement == ""
        assert m.to_text() == text

    def test_statement_that_looks_like_a_tag(self):
        """A statement reading 'URI: x' is a statement, decided by structure not content."""
        text = replace_line(EIP_IMPLICIT_SCHEME, 3, "URI: https://evil.example")
        m = parse_siwe_message(text)
        assert m.statement == "URI: https://evil.example"
        assert m.uri == "https://example.com/login"

    def test_empty_request_id_and_empty_resources(self):
        """'Request ID: ' is an empty id; 'Resources:' with no item is no resources."""
        text = EIP_IMPLICIT_SCHEME.split("\nResources:")[0] + "\nRequest ID: \nResources:"
        m = parse_siwe_message(text)
        assert m.request_id == ""
        assert m.resources == ()

    @pytest.mark.parametrize("domain", ["127.0.0.1", "test@127.0.0.1:8080", "[::1]:3000",
                                        "localhost:", "xn--bcher-kva.example", "a%20b.example"])
    def test_domain_authorities_accepted(self, domain):
        """RFC 3986 authorities (IP, userinfo, IPv6 literal, empty port, pct-encoding) parse."""
        m = parse_siwe_message(replace_line(EIP_IMPLICIT_SCHEME, 0, domain + HEADER))
        assert m.domain == domain

    @pytest.mark.parametrize("uri", ["did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
                                     "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
                                     "https://[2001:db8::7]/c?x=1#frag", "mailto:a@b.example",
                                     "file:///etc/hosts", "x:", "https://a.example:/p%20q"])
    def test_uris_accepted(self, uri):
        """URI shapes RFC 3986 allows parse."""
        assert parse_siwe_message(replace_line(EIP_IMPLICIT_SCHEME, 5, "URI: " + uri)).uri == uri

    @pytest.mark.parametrize("stamp, expected", [
        ("2021-09-30t16:25:24z", datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)),
        ("2021-09-30T16:25:24.1234567891Z", datetime(2021, 9, 30, 16, 25, 24, 123456, tzinfo=UTC)),
        ("2024-02-29T23:59:59-00:00", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
        ("2021-09-30T16:25:24+23:59", datetime(2021, 9, 29, 16, 26, 24, tzinfo=UTC)),
    ])
    def test_rfc3339_variants(self, stamp, expected):
        """Lowercase t/z, long fractions (truncated to µs), -00:00 and large offsets parse."""
        m = parse_siwe_message(replace_line(EIP_IMPLICIT_SCHEME, 9, "Issued At: " + stamp))
        assert m.issued_at == expected

    def test_chain_id_leading_zeros(self):
        """'Chain ID: 007' is 1*DIGIT, so it is chain 7."""
        assert parse_siwe_message(replace_line(EIP_IMPLICIT_SCHEME, 7, "Chain ID: 007")).chain_id == 7

    def test_largest_chain_id(self):
        """2**256-1 is accepted as a chain id."""
        text = replace_line(EIP_IMPLICIT_SCHEME, 7, f"Chain ID: {2**256 - 1}")
        assert parse_siwe_message(text).chain_id == 2**256 - 1

    def test_all_digit_address_is_checksummed(self):
        """An address with no letters is its own EIP-55 form and is accepted."""
        zero = "0x" + "0" * 40
        assert parse_siwe_message(replace_line(EIP_IMPLICIT_SCHEME, 1, zero)).address == zero


class TestParseRejects:
    @pytest.mark.parametrize("value", [None, b"bytes", 42])
    def test_not_text(self, value):
        """Anything but a str is rejected."""
        assert "text" in rejects(value)  # type: ignore[arg-type]

    def test_empty(self):
        """The empty string is rejected."""
        assert "first line" in rejects("")

    def test_too_long(self):
        """A message beyond MAX_MESSAGE_LENGTH is rejected before parsing."""
        text = EIP_IMPLICIT_SCHEME + "\n- https://a.example/" + "a" * MAX_MESSAGE_LENGTH
        assert "longer" in rejects(text)

    @pytest.mark.parametrize("header", [
        "example.com wants you to sign in with your Ethereum account",  # no colon
        "example.com wants you to sign in with your ethereum account:",  # case
        "example.com  wants you to sign in with your Ethereum account:",  # domain ends with a space
        " wants you to sign in with your Ethereum account:",  # empty domain
        "exa mple.com wants you to sign in with your Ethereum account:",
        "example.com/path wants you to sign in with your Ethereum account:",
        "://example.com wants you to sign in with your Ethereum account:",  # empty scheme
        "1https://example.com wants you to sign in with your Ethereum account:",  # bad scheme
        "https://a://b wants you to sign in with your Ethereum account:",
        "[::g]:80 wants you to sign in with your Ethereum account:",  # bad IPv6
        "a@b@c wants you to sign in with your Ethereum account:",
        "example.com:80a wants you to sign in with your Ethereum account:",
        "exämple.com wants you to sign in with your Ethereum account:",  # non-ASCII
        "a%2 wants you to sign in with your Ethereum account:",  # broken pct-encoding
    ])
    def test_bad_header(self, header):
        """A header that is not '[scheme://]authority wants you…account:' is rejected."""
        rejects(replace_line(EIP_IMPLICIT_SCHEME, 0, header))

    @pytest.mark.parametrize("address", [
        "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",  # all lowercase
        "0xC02AAA39B223FE8D0A0E5C4F27EAD9083C756CC2",  # all uppercase
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756cC2",  # one letter's case flipped
    ])
    def test_address_not_eip55(self, address):
        """Addresses that are not EIP-55 checksummed are rejected."""
        assert "EIP-55" in rejects(replace_line(EIP_IMPLICIT_SCHEME, 1, address))

    @pytest.mark.parametrize("address", ["", "C02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
                                         "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc", ADDRESS + "0",
                                         " " + ADDRESS, "0xG02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
                                         "0X" + ADDRESS[2:]])
    def test_address_shape(self, address):
        """An address that is not 0x + 40 hex digits is rejected."""
        assert "40 hex" in rejects(replace_line(EIP_IMPLICIT_SCHEME, 1, address))

    def test_missing_blank_after_address(self):
        """The address must be followed by an empty line."""
        lines = lines_of(EIP_IMPLICIT_SCHEME)
        del lines[2]
        assert "empty" in rejects("\n".join(lines))

    def test_extra_blank_before_statement(self):
        """An extra empty line before the statement is off-grammar."""
        lines = lines_of(EIP_IMPLICIT_SCHEME)
        lines.insert(2, "")
        assert "URI" in rejects("\n".join(lines))

    def test_missing_blank_after_statement(self):
        """The statement must be followed by an empty line."""
        lines = lines_of(EIP_IMPLICIT_SCHEME)
        del lines[4]
        assert "empty" in rejects("\n".join(lines))

    def test_statement_with_line_break(self):
        """A statement broken over two lines is rejected."""
        text = EIP_IMPLICIT_SCHEME.replace("Service: https", "Service: \nhttps")
        rejects(text)

    @pytest.mark.parametrize("statement", ['say "hi"', "100%", "a\tb", "café", "a\rb", "<b>", "x|y"])
    def test_statement_charset(self, statement):
        """Statement characters outside reserved/unreserved/space are rejected."""
        assert "statement" in rejects(replace_line(EIP_IMPLICIT_SCHEME, 3, statement))

    def test_single_blank_without_statement(self):
        """Without a statement, one empty line (instead of the ABNF's two) is rejected."""
        lines = lines_of(EIP_IMPLICIT_SCHEME)
        del lines[3:5]
        assert "two empty lines" in rejects("\n".join(lines))

    @pytest.mark.parametrize("index, tag", [(5, "URI"), (6, "Version"), (7, "Chain ID"),
                                            (8, "Nonce"), (9, "Issued At")])
    def test_missing_required_line(self, index, tag):
        """Dropping any required tagged line is rejected."""
        lines = lines_of(EIP_IMPLICIT_SCHEME)
        del lines[index]
        rejects("\n".join(lines))

    @pytest.mark.parametrize("first, second", [(5, 6), (6, 7), (7, 8), (8, 9)])
    def test_required_lines_out_of_order(self, first, second):
        """Swapping two adjacent required lines is rejected."""
        lines = lines_of(EIP_IMPLICIT_SCHEME)
        lines[first], lines[second] = lines[second], lines[first]
        assert "must start with" in rejects("\n".join(lines))

    @pytest.mark.parametrize("first, second", [(10, 11), (11, 12), (12, 13), (10, 12)])
    def test_optional_lines_out_of_order(self, first, second):
        """Optional lines out of the fixed order are rejected."""
        lines = lines_of(ALL_FIELDS)
        lines[first], lines[second] = lines[second], lines[first]
        assert "unexpected line" in rejects("\n".join(lines))

    @pytest.mark.parametrize("line", ["Expiration Time: 2021-10-01T16:25:24Z",
                                      "Request ID: again", "Nonce: 12345678", "Resources:", "x"])
    def test_repeated_or_unknown_trailing_line(self, line):
        """A repeated optional line or any unknown line after the fields is rejected."""
        assert "unexpected line" in rejects(ALL_FIELDS + "\n" + line)

    def test_trailing_newline(self):
        """A trailing line feed is garbage after the grammar ends."""
        assert "unexpected line" in rejects(EIP_IMPLICIT_SCHEME + "\n")

    def test_crlf_line_endings(self):
        """CRLF line endings are rejected (LF only)."""
        rejects(EIP_IMPLICIT_SCHEME.replace("\n", "\r\n"))

    @pytest.mark.parametrize("line", ["URI:https://example.com/login", "uri: https://example.com/login",
                                      "URI:  https://example.com/login"])
    def test_tag_spelling_is_exact(self, line):
        """Tags are case-sensitive and followed by exactly one space."""
        rejects(replace_line(EIP_IMPLICIT_SCHEME, 5, line))

    @pytest.mark.parametrize("uri", ["_not_a_rfc3986_valid_uri_", "", "example.com/login",
                                     "https://exa mple.com", "https://example.com/a b",
                                     "https://[::g]/", "https://a.example/%zz", "1http://a.example",
                                     "https://a.example/é"])
    def test_bad_uri(self, uri):
        """URI values that are not RFC 3986 URIs are rejected."""
        assert "uri" in rejects(replace_line(EIP_IMPLICIT_SCHEME, 5, "URI: " + uri))

    @pytest.mark.parametrize("version", ["2", "1.0", "", " 1", "01"])
    def test_version_must_be_1(self, version):
        """Any version other than exactly '1' is rejected."""
        assert "version" in rejects(replace_line(EIP_IMPLICIT_SCHEME, 6, "Version: " + version))

    @pytest.mark.parametrize("chain", ["?", "", "-1", "1.0", "0x1", " 1", "١", str(2**256)])
    def test_bad_chain_id(self, chain):
        """A chain id that is not 1*DIGIT (ASCII) within 256 bits is rejected."""
        assert "chain id" in rejects(replace_line(EIP_IMPLICIT_SCHEME, 7, "Chain ID: " + chain))

    @pytest.mark.parametrize("nonce", ["1234567", "", "abcd-efgh", "abcdefg ", "abcdéfgh",
                                       "abcdefg\t", "１２３４５６７８"])
    def test_bad_nonce(self, nonce):
        """Nonces shorter than 8 or with non-alphanumeric/non-ASCII characters are rejected."""
        assert "nonce" in rejects(replace_line(EIP_IMPLICIT_SCHEME, 8, "Nonce: " + nonce))

    @pytest.mark.parametrize("stamp", [
        "Wed Oct 05 2011 16:48:00 GMT+0200 (CEST)",
        "2021-09-30 16:25:24Z",  # space separator
        "2021-09-30T16:25:24",  # no offset
        "2021-09-30T16:25Z",  # no seconds
        "2021-9-30T16:25:24Z",
        "2021-09-30T16:25:24.Z",  # empty fraction
        "2021-09-30T16:25:24+0200",  # offset without colon
        "2021-09-30T16:25:24+24:00",  # offset hour
        "2021-09-30T16:25:24+02:60",  # offset minute
        "2021-02-30T16:25:24Z",  # no such day
        "2021-13-01T16:25:24Z",
        "2021-09-30T24:00:00Z",
        "2021-09-30T16:60:00Z",
        "2016-12-31T23:59:60Z",  # leap second
        "0000-01-01T00:00:00Z",  # year 0
        "２０２１-09-30T16:25:24Z",  # non-ASCII digits
        "2021-09-30T16:25:24Z ",
    ])
    def test_bad_issued_at(self, stamp):
        """Issued At values that are not representable RFC 3339 date-times are rejected."""
        assert "issued at" in rejects(replace_line(EIP_IMPLICIT_SCHEME, 9, "Issued At: " + stamp))

    def test_bad_expiration_time(self):
        """A malformed Expiration Time is rejected."""
        assert "expiration time" in rejects(replace_line(ALL_FIELDS, 10, "Expiration Time: tomorrow"))

    def test_bad_not_before(self):
        """A malformed Not Before is rejected."""
        assert "not before" in rejects(replace_line(ALL_FIELDS, 11, "Not Before: 2021-09-30"))

    @pytest.mark.parametrize("rid", ["a b", "a/b", "a?b", "a#b", "%zz", "é"])
    def test_bad_request_id(self, rid):
        """Request ID characters outside pchar are rejected."""
        assert "request id" in rejects(replace_line(ALL_FIELDS, 12, "Request ID: " + rid))

    @pytest.mark.parametrize("resource", ["- _not_a_rfc3986_valid_uri_",
                                          "- https://a.example/ - https://b.example/",
                                          "-https://a.example/", "-  https://a.example/", "- "])
    def test_bad_resource(self, resource):
        """Resource lines that are not '- ' + URI are rejected."""
        rejects(replace_line(ALL_FIELDS, 15, resource))

    def test_resources_header_spelling(self):
        """'Resources: ' (trailing space) is not the Resources tag."""
        assert "unexpected line" in rejects(replace_line(ALL_FIELDS, 13, "Resources: "))


class TestConstruct:
    def test_defaults(self):
        """Only the required fields are needed; optional ones default to absent."""
        m = minimal()
        assert (m.statement, m.version, m.expiration_time, m.not_before, m.request_id,
                m.resources, m.scheme) == (None, "1", None, None, None, (), None)

    def test_is_frozen(self):
        """A message cannot be mutated."""
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            minimal().nonce = "zzzzzzzz"  # type: ignore[misc]

    def test_resources_list_becomes_tuple(self):
        """Resources given as a list are stored as a tuple."""
        assert minimal(resources=["https://a.example/"]).resources == ("https://a.example/",)

    @pytest.mark.parametrize("overrides", [
        {"domain": "bad domain"},
        {"address": ADDRESS.lower()},
        {"statement": "line\nbreak"},
        {"uri": "not a uri"},
        {"version": "2"},
        {"chain_id": True},
        {"chain_id": "1"},
        {"chain_id": -1},
        {"nonce": "short"},
        {"issued_at": datetime(2021, 9, 30)},  # naive
        {"issued_at": "2021-09-30T16:25:24Z"},
        {"expiration_time": datetime(2021, 9, 30, tzinfo=timezone(timedelta(seconds=30)))},
        {"not_before": datetime(2021, 9, 30)},
        {"request_id": "a b"},
        {"resources": "https://a.example/"},
        {"resources": ["https://a.example/", "nope"]},
        {"scheme": "ht tp"},
    ])
    def test_invalid_fields_rejected(self, overrides):
        """The constructor enforces the same rules as the parser, as a ValidationError."""
        with pytest.raises(ValidationError) as caught:
            minimal(**overrides)
        assert set(caught.value.fields) == {"message"}

    def test_rendered_utc_uses_z(self):
        """UTC renders with 'Z' and whole seconds carry no fraction."""
        assert "Issued At: 2021-09-30T16:25:24Z" in minimal().to_text().split("\n")

    def test_rendered_fraction_and_negative_offset(self):
        """Microseconds render without trailing zeros; negative offsets as -HH:MM."""
        tz = timezone(-timedelta(hours=3, minutes=30))
        m = minimal(issued_at=datetime(2021, 9, 30, 1, 2, 3, 450000, tzinfo=tz))
        assert m.to_text().split("\n")[-1] == "Issued At: 2021-09-30T01:02:03.45-03:30"

    def test_no_trailing_newline(self):
        """Rendered text ends with the last field, not a line feed."""
        assert not minimal(resources=("https://a.example/",)).to_text().endswith("\n")


# ---------------------------------------------------------------- property tests

_ALNUM = string.ascii_letters + string.digits
_UNRESERVED = _ALNUM + "-._~"
_SUB_DELIMS = "!$&'()*+,;="
_PCHARS = _UNRESERVED + _SUB_DELIMS + ":@"

pct = st.tuples(st.sampled_from(string.hexdigits), st.sampled_from(string.hexdigits)).map(
    lambda t: "%" + t[0] + t[1])


def pchar_text(min_size: int = 0, max_size: int = 12, extra: str = "") -> st.SearchStrategy[str]:
    return st.lists(st.one_of(st.sampled_from(_PCHARS + extra), pct),
                    min_size=min_size, max_size=max_size).map("".join)


labels = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=10)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=3).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
userinfos = st.lists(st.one_of(st.sampled_from(_UNRESERVED + _SUB_DELIMS + ":"), pct),
                     min_size=0, max_size=8).map("".join)


@st.composite
def authorities(draw: st.DrawFn) -> str:
    user = draw(st.none() | userinfos)
    port = draw(st.none() | st.integers(0, 65535).map(str) | st.just(""))
    return (f"{user}@" if user is not None else "") + draw(hosts) + (f":{port}" if port is not None else "")


schemes = st.sampled_from(["https", "http", "ipfs", "did", "urn", "chrome-extension", "a+b.c-d", "X1"])


@st.composite
def uris(draw: st.DrawFn) -> str:
    scheme = draw(schemes)
    query = draw(st.none() | pchar_text(extra="/?"))
    fragment = draw(st.none() | pchar_text(extra="/?"))
    if draw(st.booleans()):
        segments = draw(st.lists(pchar_text(), max_size=3))
        hier = "//" + draw(authorities()) + "".join("/" + s for s in segments)
    else:
        hier = draw(pchar_text(min_size=1)) + "".join(
            "/" + s for s in draw(st.lists(pchar_text(), max_size=3)))
    return (f"{scheme}:{hier}" + (f"?{query}" if query is not None else "")
            + (f"#{fragment}" if fragment is not None else ""))


offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 30),
                       timezones=offsets)
statements = st.text(alphabet=_UNRESERVED + ":/?#[]@" + _SUB_DELIMS + " ", max_size=40)


@st.composite
def messages(draw: st.DrawFn) -> SiweMessage:
    return SiweMessage(
        scheme=draw(st.none() | schemes),
        domain=draw(authorities()),
        address=to_checksum_address(draw(st.binary(min_size=20, max_size=20))),
        statement=draw(st.none() | statements),
        uri=draw(uris()),
        chain_id=draw(st.integers(0, 2**256 - 1)),
        nonce=draw(st.text(alphabet=_ALNUM, min_size=8, max_size=32)),
        issued_at=draw(moments),
        expiration_time=draw(st.none() | moments),
        not_before=draw(st.none() | moments),
        request_id=draw(st.none() | pchar_text()),
        resources=draw(st.lists(uris(), max_size=3)),
    )


class TestRoundTrip:
    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    @given(messages())
    def test_parse_of_render_is_identity(self, m):
        """parse(to_text(m)) == m for every valid message."""
        assert parse_siwe_message(m.to_text()) == m

    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(messages())
    def test_render_is_a_fixpoint(self, m):
        """Rendering the parse of a rendering reproduces the same text."""
        text = m.to_text()
        assert parse_siwe_message(text).to_text() == text

    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(messages(), st.data())
    def test_single_character_edits_never_crash(self, m, data):
        """Inserting or deleting one character yields a message or a ValidationError, nothing else."""
        text = m.to_text()
        pos = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()):
            text = text[:pos] + data.draw(st.characters()) + text[pos:]
        else:
            text = text[:pos] + text[pos + 1:]
        try:
            result = parse_siwe_message(text)
        except ValidationError as e:
            assert set(e.fields) == {"message"}
        else:
            assert isinstance(result, SiweMessage)
            assert parse_siwe_message(result.to_text()) == result

    @settings(max_examples=300)
    @given(st.text(max_size=300))
    def test_arbitrary_text_only_raises_validation_error(self, text):
        """Random text never escapes as anything but a ValidationError."""
        try:
            parse_siwe_message(text)
        except ValidationError as e:
            assert set(e.fields) == {"message"}


class TestCheck:
    EXPECT = dict(domain="example.com", uri="https://example.com/login", chain_id=1, nonce="32891756")

    def msg(self, **overrides: object) -> SiweMessage:
        return attrs.evolve(parse_siwe_message(EIP_IMPLICIT_SCHEME), **overrides)

    def fails(self, m: SiweMessage, **kwargs: object) -> str:
        args = {**self.EXPECT, "now": T0, **kwargs}
        with pytest.raises(ValidationError) as caught:
            m.check(**args)  # type: ignore[arg-type]
        assert set(caught.value.fields) == {"message"}
        return caught.value.fields["message"]

    def test_matching_message_passes(self):
        """The EIP example checked against its own values at issue time passes."""
        assert self.msg().check(**self.EXPECT, now=T0) is None

    def test_domain_mismatch(self):
        """A different domain (including a port difference) is rejected."""
        assert "domain" in self.fails(self.msg(), domain="evil.com")
        assert "domain" in self.fails(self.msg(), domain="example.com:443")

    def test_domain_compared_exactly(self):
        """Domain comparison is exact, not case-folded."""
        assert "domain" in self.fails(self.msg(), domain="Example.com")

    def test_uri_mismatch(self):
        """A different URI is rejected."""
        assert "uri" in self.fails(self.msg(), uri="https://example.com/login/")

    def test_chain_id_mismatch(self):
        """A different chain id is rejected."""
        assert "chain id" in self.fails(self.msg(), chain_id=137)

    def test_nonce_mismatch(self):
        """A different nonce is rejected."""
        assert "nonce" in self.fails(self.msg(), nonce="32891757")

    def test_scheme_must_match_uri_scheme_by_default(self):
        """An explicit scheme must equal the expected URI's scheme unless given."""
        assert self.msg(scheme="https").check(**self.EXPECT, now=T0) is None
        assert "scheme" in self.fails(self.msg(scheme="http"))

    def test_scheme_argument(self):
        """An explicit scheme argument overrides the URI's scheme."""
        assert self.msg(scheme="http").check(**self.EXPECT, now=T0, scheme="http") is None
        assert "scheme" in self.fails(self.msg(scheme="https"), scheme="http")

    def test_expired_at_the_instant(self):
        """now == expiration_time is expired; a microsecond before is not."""
        exp = T0 + timedelta(minutes=10)
        m = self.msg(expiration_time=exp)
        assert m.check(**self.EXPECT, now=exp - timedelta(microseconds=1)) is None
        assert "expired" in self.fails(m, now=exp)
        assert "expired" in self.fails(m, now=exp + timedelta(days=1))

    def test_expiration_compared_across_offsets(self):
        """Expiry compares instants, whatever the offsets."""
        exp = datetime(2021, 9, 30, 18, 25, 24, tzinfo=timezone(timedelta(hours=2)))  # == T0
        assert "expired" in self.fails(self.msg(expiration_time=exp), now=T0)

    def test_not_before(self):
        """now < not_before is rejected; now == not_before passes."""
        nbf = T0 + timedelta(minutes=1)
        m = self.msg(not_before=nbf)
        assert "not valid yet" in self.fails(m, now=T0)
        assert m.check(**self.EXPECT, now=nbf) is None

    def test_issued_at_skew(self):
        """issued_at up to 5 minutes ahead of now passes; further ahead is rejected."""
        m = self.msg()
        assert m.check(**self.EXPECT, now=T0 - ISSUED_AT_SKEW) is None
        assert "future" in self.fails(m, now=T0 - ISSUED_AT_SKEW - timedelta(microseconds=1))

    def test_old_issued_at_is_fine(self):
        """An old issued_at alone does not fail the check (expiry is what bounds age)."""
        assert self.msg().check(**self.EXPECT, now=T0 + timedelta(days=365)) is None

    def test_naive_now_is_a_programming_error(self):
        """A naive 'now' raises ValueError rather than comparing wrongly."""
        with pytest.raises(ValueError, match="timezone-aware"):
            self.msg().check(**self.EXPECT, now=datetime(2021, 9, 30))  # type: ignore[arg-type]


class TestBoundary:
    def test_core_does_not_import_forbidden_packages(self):
        """The module imports none of aiohttp/asyncpg/redis/web3/stripe/eth_account."""
        import ast
        import inspect

        import audifi_core.auth.siwe as siwe

        tree = ast.parse(inspect.getsource(siwe))
        roots = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
        assert roots & {"aiohttp", "asyncpg", "redis", "web3", "stripe", "eth_account"} == set()
        assert "eth_utils" in roots
