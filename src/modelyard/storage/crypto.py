"""Blob bytes: content addresses, and envelope encryption at rest.

Encrypted layout (every integer big-endian)::

    header   magic b"MYE1" | version u8 | chunk size u32 | nonce prefix (8 bytes)
             | wrap nonce (12 bytes) | data key wrapped by the master key (32 + 16 bytes)
    records  AES-256-GCM(data key, nonce = nonce prefix | index u32,
                         aad = index u32 | final u8) of each plaintext chunk, 16-byte tag

Each blob has its own random data key, so a master key never encrypts more than one small
key per blob. The first 17 header bytes are the additional data of the key wrap, so a
changed chunk size or nonce prefix fails like a wrong master key. A record's index and
final flag are authenticated, so a reordered, dropped or truncated record fails to decrypt;
the final record is always present (empty for an empty blob). Every chunk a reader yields
has been authenticated; a damaged blob raises :class:`~modelyard.errors.ModelyardError`
where the damage is met.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import re
import struct
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from modelyard.errors import InvalidInput, ModelyardError
from modelyard.storage.base import CHUNK_SIZE

MAGIC = b"MYE1"
VERSION = 1
KEY_SIZE = 32
TAG_SIZE = 16
_PREFIX = struct.Struct(">4sBI8s")  # magic, version, chunk size, nonce prefix
_WRAP_NONCE_SIZE = 12
HEADER_SIZE = _PREFIX.size + _WRAP_NONCE_SIZE + KEY_SIZE + TAG_SIZE
_RECORD_AAD = struct.Struct(">IB")
_MAX_CHUNK_SIZE = 64 * 1024 * 1024
_MAX_RECORDS = 2**32  # the nonce counter is 32 bits wide

_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_sha256(value: str) -> str:
    """Return ``value`` as a blob address (64 lowercase hex digits) or raise InvalidInput."""
    address = value.lower()
    if not _SHA256.fullmatch(address):
        raise InvalidInput(f"not a sha256 hex digest: {value[:80]!r}")
    return address


def hash_file(path: Path) -> tuple[str, int]:
    """The sha256 hex digest and size of a file, read in bounded chunks."""
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        return digest, os.fstat(f.fileno()).st_size


def read_chunks(f: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the rest of ``f`` in chunks of at most ``chunk_size`` bytes."""
    return iter(functools.partial(f.read, chunk_size), b"")


def encrypt_stream(
    src: BinaryIO, master_key: bytes, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """Yield the encrypted form of ``src``: the header, then one record per chunk."""
    _check_key(master_key)
    if not 0 < chunk_size <= _MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be in 1..{_MAX_CHUNK_SIZE}, not {chunk_size}")
    data_key = AESGCM.generate_key(bit_length=256)
    nonce_prefix = os.urandom(8)
    prefix = _PREFIX.pack(MAGIC, VERSION, chunk_size, nonce_prefix)
    wrap_nonce = os.urandom(_WRAP_NONCE_SIZE)
    yield prefix + wrap_nonce + AESGCM(master_key).encrypt(wrap_nonce, data_key, prefix)

    aead = AESGCM(data_key)
    current = _read_full(src, chunk_size)
    for index in range(_MAX_RECORDS):
        # A chunk is final when the one after it is empty, so the reader can tell a
        # blob that ends on a chunk boundary from one that was cut there.
        following = _read_full(src, chunk_size) if len(current) == chunk_size else b""
        final = not following
        yield aead.encrypt(_nonce(nonce_prefix, index), current, _aad(index, final))
        if final:
            return
        current = following
    raise InvalidInput(f"file too large to encrypt in chunks of {chunk_size} bytes")


def decrypt_stream(chunks: Iterable[bytes], master_key: bytes) -> Iterator[bytes]:
    """Yield the plaintext of an encrypted blob given as byte chunks of any sizes.

    ``chunks`` may come from :func:`read_chunks` on a file or from an S3 body's
    ``iter_chunks()``; at most one record (plus one incoming chunk) is buffered.
    """
    _check_key(master_key)
    pieces = iter(chunks)
    buf = bytearray()
    for piece in pieces:
        buf += piece
        if len(buf) >= HEADER_SIZE:
            break
    if len(buf) < HEADER_SIZE:
        raise _damaged("it is shorter than its header (truncated or not encrypted)")
    chunk_size, nonce_prefix, aead = _open_header(bytes(buf[:HEADER_SIZE]), master_key)
    del buf[:HEADER_SIZE]

    record_size = chunk_size + TAG_SIZE
    index = 0
    # The piece that completed the header may already hold records: drain it first.
    for piece in itertools.chain([b""], pieces):
        buf += piece
        # Only a record with bytes after it is known not to be the final one.
        while len(buf) > record_size:
            # A view, not a slice: one less copy of every record held at a time.
            with memoryview(buf) as view, view[:record_size] as record:
                plain = _open_record(aead, nonce_prefix, index, record, False)
            del buf[:record_size]
            yield plain
            index += 1
    if len(buf) < TAG_SIZE:
        raise _damaged(f"record {index} is missing (truncated)")
    last = _open_record(aead, nonce_prefix, index, buf, True)
    if last:
        yield last


def encrypt_file(src: Path, dst: Path, master_key: bytes, chunk_size: int = CHUNK_SIZE) -> None:
    """Write the encrypted form of ``src`` to ``dst`` and flush it to disk."""
    with src.open("rb") as fin, dst.open("wb") as fout:
        for part in encrypt_stream(fin, master_key, chunk_size):
            fout.write(part)
        fout.flush()
        os.fsync(fout.fileno())


@contextlib.contextmanager
def encrypted_copy(src: Path, tmp_dir: Path, master_key: bytes) -> Iterator[Path]:
    """Yield a temporary file in ``tmp_dir`` holding ``src`` encrypted; removed on exit.

    The caller may move the file away (``os.replace``); then there is nothing to remove.
    """
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=".encrypting-", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        encrypt_file(src, tmp, master_key)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def plaintext_size(header: bytes, stored_size: int) -> int:
    """Plaintext size of an encrypted blob from its first bytes and its stored size."""
    chunk_size, _ = _parse_prefix(header)
    body = stored_size - HEADER_SIZE
    full, rest = divmod(body, chunk_size + TAG_SIZE)
    if body < TAG_SIZE or 0 < rest < TAG_SIZE:
        raise _damaged("its size does not fit its chunk layout (truncated)")
    return full * chunk_size + (rest - TAG_SIZE if rest else 0)


def _read_full(f: BinaryIO, size: int) -> bytes:
    # A short read means end of file only for regular files; pipes and sockets may
    # return less, so keep reading until the chunk is full or the stream ends.
    data = f.read(size)
    while data and len(data) < size:
        more = f.read(size - len(data))
        if not more:
            break
        data += more
    return data


def _parse_prefix(header: bytes) -> tuple[int, bytes]:
    if len(header) < HEADER_SIZE or header[: len(MAGIC)] != MAGIC:
        raise _damaged("it does not start with an encryption header")
    _, version, chunk_size, nonce_prefix = _PREFIX.unpack_from(header)
    if version != VERSION:
        raise _damaged(f"encryption format version {version} is not supported")
    if not 0 < chunk_size <= _MAX_CHUNK_SIZE:
        raise _damaged(f"its chunk size {chunk_size} is out of range")
    return chunk_size, nonce_prefix


def _open_header(header: bytes, master_key: bytes) -> tuple[int, bytes, AESGCM]:
    chunk_size, nonce_prefix = _parse_prefix(header)
    wrap_nonce = header[_PREFIX.size : _PREFIX.size + _WRAP_NONCE_SIZE]
    wrapped = header[_PREFIX.size + _WRAP_NONCE_SIZE : HEADER_SIZE]
    try:
        data_key = AESGCM(master_key).decrypt(wrap_nonce, wrapped, header[: _PREFIX.size])
    except InvalidTag:
        raise _damaged(
            "its data key does not unwrap (wrong master key or damaged header)"
        ) from None
    return chunk_size, nonce_prefix, AESGCM(data_key)


def _open_record(
    aead: AESGCM,
    nonce_prefix: bytes,
    index: int,
    record: bytes | bytearray | memoryview,
    final: bool,
) -> bytes:
    if index >= _MAX_RECORDS:
        raise _damaged("it has more records than its format allows")
    try:
        return aead.decrypt(_nonce(nonce_prefix, index), record, _aad(index, final))
    except InvalidTag:
        raise _damaged(
            f"record {index} fails authentication (damaged, reordered or truncated)"
        ) from None


def _nonce(nonce_prefix: bytes, index: int) -> bytes:
    return nonce_prefix + index.to_bytes(4, "big")


def _aad(index: int, final: bool) -> bytes:
    return _RECORD_AAD.pack(index, int(final))


def _check_key(master_key: bytes) -> None:
    if len(master_key) != KEY_SIZE:
        raise ValueError(f"the master key must be {KEY_SIZE} bytes, not {len(master_key)}")


def _damaged(why: str) -> ModelyardError:
    return ModelyardError(f"encrypted blob cannot be read: {why}")
