"""The BlobStore contract, run against every backend with encryption off and on."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import InvalidInput, NotFound
from modelyard.storage import BlobInfo
from modelyard.storage.base import CHUNK_SIZE
from modelyard.storage.crypto import HEADER_SIZE, MAGIC, TAG_SIZE
from tests.storage.cases import MARKER, MIB, Case, sample, sha256

BIG = 3 * MIB + MIB // 2


def test_multi_chunk_file_round_trips(case: Case) -> None:
    data = sample(BIG)
    staged = case.stage(data)

    info = case.store.put_file(staged)

    assert info == BlobInfo(sha256(data), len(data))
    assert not staged.exists()
    assert case.store.exists(info.sha256)
    assert case.store.size(info.sha256) == len(data)
    chunks = list(case.store.open_stream(info.sha256))
    assert len(chunks) == 4
    assert max(len(c) for c in chunks) <= CHUNK_SIZE
    assert b"".join(chunks) == data


def test_smaller_read_chunks_are_honoured_for_plain_blobs(case: Case) -> None:
    data = sample(MIB)
    info = case.store.put_file(case.stage(data))

    chunks = list(case.store.open_stream(info.sha256, chunk_size=64 * 1024))

    assert b"".join(chunks) == data
    assert len(chunks) == (1 if case.encrypted else 16)


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 2 * CHUNK_SIZE + 1])
def test_edge_sizes_round_trip(case: Case, size: int) -> None:
    data = sample(size)

    info = case.store.put_file(case.stage(data))

    assert info.size == size
    assert case.store.size(info.sha256) == size
    assert b"".join(case.store.open_stream(info.sha256)) == data


def test_declared_sha256_is_accepted_when_it_matches(case: Case) -> None:
    data = sample(1000)

    info = case.store.put_file(case.stage(data), sha256=sha256(data).upper())

    assert info.sha256 == sha256(data)
    assert case.stored() == [sha256(data)]


def test_sha256_mismatch_is_refused_and_nothing_is_stored(case: Case) -> None:
    data, claimed = sample(2 * MIB), sample(10)
    staged = case.stage(data)

    with pytest.raises(InvalidInput, match=sha256(data)):
        case.store.put_file(staged, sha256=sha256(claimed))

    assert not case.store.exists(sha256(data))
    assert not case.store.exists(sha256(claimed))
    assert case.stored() == []
    assert staged.read_bytes() == data  # left for the caller to remove


def test_same_content_is_stored_once(case: Case) -> None:
    data = sample(MIB + 5)
    first = case.store.put_file(case.stage(data))
    at_rest = case.read_raw(first.sha256)
    again = case.stage(data)

    second = case.store.put_file(again)

    assert second == first
    assert not again.exists()
    assert case.stored() == [first.sha256]
    # Encryption is randomised, so equal bytes prove the blob was not written again.
    assert case.read_raw(first.sha256) == at_rest


def test_delete_removes_the_blob(case: Case) -> None:
    kept = case.store.put_file(case.stage(b"kept"))
    gone = case.store.put_file(case.stage(b"gone"))

    case.store.delete(gone.sha256)
    case.store.delete(gone.sha256)  # a second delete is not an error

    assert not case.store.exists(gone.sha256)
    with pytest.raises(NotFound):
        case.store.open_stream(gone.sha256)
    assert case.stored() == [kept.sha256]
    assert b"".join(case.store.open_stream(kept.sha256)) == b"kept"


def test_missing_blob_is_not_found(case: Case, tmp_path: Path) -> None:
    missing = sha256(b"never stored")
    dest = tmp_path / "fetched" / "out"

    assert not case.store.exists(missing)
    with pytest.raises(NotFound):
        case.store.open_stream(missing)  # raised on the call, before any iteration
    with pytest.raises(NotFound):
        case.store.size(missing)
    with pytest.raises(NotFound):
        case.store.fetch_to(missing, dest)
    assert not dest.parent.exists()


@pytest.mark.parametrize("address", ["../../etc/passwd", "abc", "g" * 64, "a" * 63 + "/"])
def test_malformed_address_is_refused(case: Case, address: str) -> None:
    with pytest.raises(InvalidInput):
        case.store.exists(address)
    with pytest.raises(InvalidInput):
        case.store.open_stream(address)
    with pytest.raises(InvalidInput):
        case.store.size(address)
    with pytest.raises(InvalidInput):
        case.store.delete(address)
    with pytest.raises(InvalidInput):
        case.store.put_file(case.stage(b"x"), sha256=address)
    assert case.stored() == []


def test_fetch_to_writes_the_plaintext(case: Case, tmp_path: Path) -> None:
    data = sample(BIG)
    info = case.store.put_file(case.stage(data))
    dest = tmp_path / "out" / "model.bin"

    assert case.store.fetch_to(info.sha256, dest) == dest

    assert dest.read_bytes() == data
    assert list(dest.parent.iterdir()) == [dest]


def test_staged_file_left_by_a_crash_is_not_a_blob(case: Case) -> None:
    data = sample(MIB)
    case.stage(data)  # the server died before put_file

    assert not case.store.exists(sha256(data))
    with pytest.raises(NotFound):
        case.store.open_stream(sha256(data))
    assert case.stored() == []

    assert case.store.put_file(case.stage(data)).sha256 == sha256(data)
    assert case.stored() == [sha256(data)]


def test_bytes_at_rest_hold_the_plaintext_only_when_unencrypted(case: Case) -> None:
    data = sample(BIG)
    info = case.store.put_file(case.stage(data))

    raw = case.read_raw(info.sha256)

    assert data.count(MARKER) == 3
    if case.encrypted:
        assert MARKER not in raw
        assert raw.startswith(MAGIC)
        assert len(raw) == HEADER_SIZE + len(data) + 4 * TAG_SIZE
        assert case.store.local_path(info.sha256) is None
    else:
        assert raw == data
