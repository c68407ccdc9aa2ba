"""Encryption at rest through the stores: damaged, cut, reordered or foreign-key blobs fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import ModelyardError
from modelyard.storage.crypto import HEADER_SIZE, TAG_SIZE
from tests.storage.cases import MIB, OTHER_KEY, Case, sample

BIG = 3 * MIB + MIB // 2
RECORD = MIB + TAG_SIZE


def _read_all(case: Case, sha: str) -> tuple[bytes, ModelyardError]:
    """The plaintext yielded before the read failed, and the failure."""
    got = bytearray()

    def drain() -> None:
        for chunk in case.store.open_stream(sha):
            got.extend(chunk)

    with pytest.raises(ModelyardError, match="cannot be read") as failure:
        drain()
    return bytes(got), failure.value


@pytest.fixture
def stored(encrypted_case: Case) -> tuple[str, bytes, bytes]:
    """A 3.5 MiB blob in the store: its address, plaintext and bytes at rest."""
    data = sample(BIG)
    info = encrypted_case.store.put_file(encrypted_case.stage(data))
    return info.sha256, data, encrypted_case.read_raw(info.sha256)


def test_flipped_byte_in_a_record_fails_after_the_good_records(
    encrypted_case: Case, stored: tuple[str, bytes, bytes]
) -> None:
    sha, data, raw = stored
    damaged = bytearray(raw)
    damaged[HEADER_SIZE + RECORD + 100] ^= 0x01
    encrypted_case.write_raw(sha, bytes(damaged))

    got, failure = _read_all(encrypted_case, sha)

    assert "record 1" in failure.detail
    assert got == data[:MIB]  # only authenticated plaintext was released


@pytest.mark.parametrize("offset", [6, 12, HEADER_SIZE - 1])  # chunk size, nonce prefix, key
def test_damaged_header_fails_before_any_plaintext(
    encrypted_case: Case, stored: tuple[str, bytes, bytes], offset: int
) -> None:
    sha, _, raw = stored
    damaged = bytearray(raw)
    damaged[offset] ^= 0x80
    encrypted_case.write_raw(sha, bytes(damaged))

    got, _ = _read_all(encrypted_case, sha)

    assert got == b""


@pytest.mark.parametrize(
    "keep",
    [
        HEADER_SIZE + 3 * RECORD,  # the final record dropped, cut on a record boundary
        HEADER_SIZE + 3 * RECORD + 1000,  # cut inside the final record
        HEADER_SIZE + 5,  # cut inside the first record's tag
        HEADER_SIZE,  # the header alone
        HEADER_SIZE - 1,  # inside the header
    ],
)
def test_truncated_blob_fails(
    encrypted_case: Case, stored: tuple[str, bytes, bytes], keep: int
) -> None:
    sha, data, raw = stored
    encrypted_case.write_raw(sha, raw[:keep])

    got, _ = _read_all(encrypted_case, sha)

    assert data.startswith(got)
    assert len(got) < len(data)


def test_bytes_appended_after_the_final_record_fail(
    encrypted_case: Case, stored: tuple[str, bytes, bytes]
) -> None:
    sha, _, raw = stored
    encrypted_case.write_raw(sha, raw + b"\x00" * 32)

    _read_all(encrypted_case, sha)


def test_reordered_records_fail(encrypted_case: Case, stored: tuple[str, bytes, bytes]) -> None:
    sha, _, raw = stored
    first = slice(HEADER_SIZE, HEADER_SIZE + RECORD)
    second = slice(HEADER_SIZE + RECORD, HEADER_SIZE + 2 * RECORD)
    swapped = raw[: first.start] + raw[second] + raw[first] + raw[second.stop :]
    encrypted_case.write_raw(sha, swapped)

    got, failure = _read_all(encrypted_case, sha)

    assert got == b""
    assert "record 0" in failure.detail


def test_records_from_another_blob_fail(encrypted_case: Case) -> None:
    one = encrypted_case.store.put_file(encrypted_case.stage(sample(2 * MIB)))
    other = encrypted_case.store.put_file(encrypted_case.stage(sample(2 * MIB)))
    raw_one, raw_other = encrypted_case.read_raw(one.sha256), encrypted_case.read_raw(other.sha256)
    # Same master key and layout, but every blob has its own data key.
    encrypted_case.write_raw(one.sha256, raw_one[:HEADER_SIZE] + raw_other[HEADER_SIZE:])

    got, _ = _read_all(encrypted_case, one.sha256)

    assert got == b""


def test_wrong_master_key_fails(encrypted_case: Case, stored: tuple[str, bytes, bytes]) -> None:
    sha, data, _ = stored
    foreign = encrypted_case.reopen(OTHER_KEY)

    with pytest.raises(ModelyardError, match="wrong master key"):
        b"".join(foreign.open_stream(sha))
    assert foreign.size(sha) == len(data)  # the layout is public, the content is not


def test_failed_fetch_leaves_no_file(
    encrypted_case: Case, stored: tuple[str, bytes, bytes], tmp_path: Path
) -> None:
    sha, _, raw = stored
    encrypted_case.write_raw(sha, raw[:-1])
    dest = tmp_path / "fetched" / "model.bin"

    with pytest.raises(ModelyardError, match="cannot be read"):
        encrypted_case.store.fetch_to(sha, dest)

    assert list(dest.parent.iterdir()) == []
