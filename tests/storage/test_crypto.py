"""The envelope format itself, fed and read in awkward pieces."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from modelyard.errors import InvalidInput, ModelyardError
from modelyard.storage.crypto import (
    HEADER_SIZE,
    MAGIC,
    TAG_SIZE,
    check_sha256,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
    encrypted_copy,
    hash_file,
    plaintext_size,
)
from tests.storage.cases import MARKER, MASTER_KEY, sample, sha256


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


class _Trickle(io.RawIOBase):
    """A stream that returns at most 1000 bytes per read, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 1000) if size >= 0 else 1000)


@pytest.mark.parametrize("chunk_size", [16, 1000, 4096])
@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 3000, 10_007])
def test_round_trip_read_in_any_pieces(size: int, chunk_size: int) -> None:
    data = sample(size)
    sealed = b"".join(encrypt_stream(io.BytesIO(data), MASTER_KEY, chunk_size))

    records = max(1, -(-size // chunk_size))
    assert len(sealed) == HEADER_SIZE + size + records * TAG_SIZE
    assert plaintext_size(sealed[:HEADER_SIZE], len(sealed)) == size
    for piece in (1, 7, chunk_size + TAG_SIZE, 65_536):
        assert b"".join(decrypt_stream(_pieces(sealed, piece), MASTER_KEY)) == data


def test_short_reads_from_the_source_make_full_chunks() -> None:
    data = sample(10_000)

    sealed = b"".join(encrypt_stream(cast(BinaryIO, _Trickle(data)), MASTER_KEY, chunk_size=4096))

    assert len(sealed) == HEADER_SIZE + len(data) + 3 * TAG_SIZE
    assert b"".join(decrypt_stream([sealed], MASTER_KEY)) == data


def test_same_plaintext_encrypts_differently_each_time() -> None:
    data = sample(5000)

    one = b"".join(encrypt_stream(io.BytesIO(data), MASTER_KEY))
    two = b"".join(encrypt_stream(io.BytesIO(data), MASTER_KEY))

    assert one != two
    assert one[: len(MAGIC)] == two[: len(MAGIC)] == MAGIC


def test_unencrypted_bytes_are_refused() -> None:
    with pytest.raises(ModelyardError, match="encryption header"):
        list(decrypt_stream([b"\x00" * 200], MASTER_KEY))


def test_unknown_format_version_is_refused() -> None:
    sealed = bytearray(b"".join(encrypt_stream(io.BytesIO(b"abc"), MASTER_KEY)))
    sealed[len(MAGIC)] = 9

    with pytest.raises(ModelyardError, match="version 9"):
        list(decrypt_stream([bytes(sealed)], MASTER_KEY))


def test_master_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        list(encrypt_stream(io.BytesIO(b"abc"), MASTER_KEY[:16]))


def test_encrypt_file_writes_no_plaintext(tmp_path: Path) -> None:
    src, dst = tmp_path / "plain", tmp_path / "sealed"
    data = sample(3 * 1024 * 1024)
    src.write_bytes(data)

    encrypt_file(src, dst, MASTER_KEY)

    assert MARKER not in dst.read_bytes()
    with dst.open("rb") as f:
        assert b"".join(decrypt_stream(iter(lambda: f.read(5000), b""), MASTER_KEY)) == data


def test_encrypted_copy_is_removed_on_exit_and_on_error(tmp_path: Path) -> None:
    src = tmp_path / "plain"
    src.write_bytes(b"payload")
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    with encrypted_copy(src, scratch, MASTER_KEY) as sealed:
        assert sealed.parent == scratch
        assert sealed.read_bytes().startswith(MAGIC)
    with pytest.raises(RuntimeError), encrypted_copy(src, scratch, MASTER_KEY):
        raise RuntimeError

    assert list(scratch.iterdir()) == []
    assert src.read_bytes() == b"payload"


def test_hash_file_gives_digest_and_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = sample(2 * 1024 * 1024 + 3)
    path.write_bytes(data)

    assert hash_file(path) == (sha256(data), len(data))


def test_check_sha256_normalises_case_and_refuses_the_rest() -> None:
    digest = sha256(b"x")

    assert check_sha256(digest.upper()) == digest
    for bad in ("", digest[:-1], digest + "0", "z" * 64, f"{digest[:62]}/."):
        with pytest.raises(InvalidInput):
            check_sha256(bad)


def test_sizes_that_no_layout_produces_are_refused() -> None:
    header = b"".join(encrypt_stream(io.BytesIO(b""), MASTER_KEY))[:HEADER_SIZE]

    with pytest.raises(ModelyardError, match="truncated"):
        plaintext_size(header, HEADER_SIZE + TAG_SIZE - 1)
    with pytest.raises(ModelyardError, match="truncated"):
        plaintext_size(header, HEADER_SIZE + 1024 * 1024 + TAG_SIZE + 5)
