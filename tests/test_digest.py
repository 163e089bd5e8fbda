"""Digest grammar: the only gate between untrusted strings and blob paths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocilayout.digest import ALGORITHMS, Digest, is_digest, parse_digest
from ocilayout.errors import CorruptLayoutError, InvalidDigestError

HEX256 = "0123456789abcdef" * 4
HEX512 = HEX256 * 2


def test_valid_sha256() -> None:
    digest = parse_digest("sha256:" + HEX256)
    assert digest == "sha256:" + HEX256 and isinstance(digest, Digest)
    assert str(digest) == "sha256:" + HEX256
    assert digest.short == HEX256[:12]


def test_valid_sha512() -> None:
    digest = parse_digest("sha512:" + HEX512)
    assert (digest.algorithm, digest.encoded) == ("sha512", HEX512)
    assert str(digest) == "sha512:" + HEX512


def test_invalid_digest_is_a_corrupt_layout_error() -> None:
    # exit code 5 through the hierarchy
    with pytest.raises(CorruptLayoutError):
        parse_digest("sha256:..")
    assert InvalidDigestError.exit_code == 5


@pytest.mark.parametrize(
    "value",
    [
        "sha256:../../x",
        "sha256:..",
        "..",
        "sha256:" + HEX256[:-2] + "/.",
        "sha256/" + HEX256,
        "sha256:" + HEX256[:32] + "/" + HEX256[33:],
        "/etc/passwd",
        "sha256:/" + HEX256[1:],
        "/sha256:" + HEX256,
        "../sha256:" + HEX256,
        "sha256:" + HEX256 + "\x00",
        "sha256:" + HEX256[:10] + "\x00" + HEX256[11:],
        "sha256:" + HEX256.upper(),
        "sha256:" + HEX256[:-1] + "A",
        "SHA256:" + HEX256,
        "sha256:" + HEX256[:-1],
        "sha256:" + HEX256 + "0",
        "sha256:" + HEX512,
        "sha512:" + HEX256,
        "sha256:",
        ":" + HEX256,
        "sha256" + HEX256,
        "",
        "md5:" + "0" * 32,
        "sha384:" + "0" * 96,
        "blake3:" + HEX256,
        "sha256:" + "g" * 64,
        "sha256:" + HEX256 + "\n",
        "sha256:" + HEX256 + "\r\n",
        "\nsha256:" + HEX256,
        " sha256:" + HEX256,
        "sha256:" + HEX256 + " ",
        "sha256::" + HEX256,
        "sha256:" + HEX256 + ":",
        "sha256:sha256:" + HEX256[14:],
        "sha256:" + "0" * 32 + "=" * 32,
        "sha256:" + "\u0660" * 64,  # Arabic-Indic digits: not ASCII hex
    ],
)
def test_rejected(value: str) -> None:
    with pytest.raises(InvalidDigestError):
        parse_digest(value)
    assert not is_digest(value)


@pytest.mark.parametrize("value", [None, 256, 1.5, b"sha256:" + HEX256.encode(), ["sha256:" + HEX256], {"d": 1}, True])
def test_non_string_rejected(value: object) -> None:
    with pytest.raises(InvalidDigestError, match="string"):
        parse_digest(value)


def test_error_message_is_short_and_one_line() -> None:
    with pytest.raises(InvalidDigestError) as info:
        parse_digest("sha256:" + "x" * 10_000 + "\n" + "y" * 100)
    message = str(info.value)
    assert len(message) < 300
    assert "\n" not in message.replace("\\n", "")


def test_supported_algorithms() -> None:
    assert ALGORITHMS == {"sha256": 64, "sha512": 128}


@given(st.text(max_size=200))
def test_anything_accepted_is_path_safe(value: str) -> None:
    try:
        digest = parse_digest(value)
    except InvalidDigestError:
        return
    assert str(digest) == value
    assert digest.algorithm in ALGORITHMS
    assert set(digest.encoded) <= set("0123456789abcdef")
    assert len(digest.encoded) == ALGORITHMS[digest.algorithm]


@given(st.sampled_from(sorted(ALGORITHMS)), st.data())
def test_roundtrip(algorithm: str, data: st.DataObject) -> None:
    encoded = data.draw(st.text("0123456789abcdef", min_size=ALGORITHMS[algorithm], max_size=ALGORITHMS[algorithm]))
    digest = parse_digest(f"{algorithm}:{encoded}")
    assert parse_digest(str(digest)) == digest


def test_digests_order_and_hash() -> None:
    a = parse_digest("sha256:" + "0" * 64)
    b = parse_digest("sha256:" + "1" * 64)
    assert a < b
    assert len({a, parse_digest("sha256:" + "0" * 64)}) == 1
