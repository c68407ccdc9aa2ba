"""Safe unpacking of uploaded archives: what is written, what is refused, what is undone."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from modelyard.errors import InvalidInput, UnsafeArtifact
from modelyard.registry.archives import is_archive, safe_extract

MB = 1 << 20


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _leftovers(dest: Path) -> list[Path]:
    return sorted(dest.rglob("*")) if dest.exists() else []


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [("w", ".tar"), ("w:gz", ".tar.gz"), ("w:bz2", ".tar.bz2"), ("w:xz", ".tar.xz")],
)
def test_extracts_every_tar_flavour(tmp_path: Path, mode: str, suffix: str) -> None:
    folder = tarfile.TarInfo("sub")
    folder.type = tarfile.DIRTYPE
    archive = _tar(
        tmp_path / f"a{suffix}",
        [_file("./a.txt", b"alpha"), (folder, None), _file("sub/b.bin", b"\x00\x01" * 1000)],
        mode,
    )
    dest = tmp_path / "out"

    files = safe_extract(archive, dest, max_total_bytes=MB)

    assert is_archive(archive) == "tar"
    assert sorted(p.relative_to(dest).as_posix() for p in files) == ["a.txt", "sub/b.bin"]
    assert (dest / "a.txt").read_bytes() == b"alpha"
    assert (dest / "sub" / "b.bin").read_bytes() == b"\x00\x01" * 1000


def test_extracts_zip(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dir/", b"")
        zf.writestr("dir/x.json", b'{"a": 1}')
        zf.writestr("y.txt", b"why")

    files = safe_extract(archive, tmp_path / "out", max_total_bytes=MB)

    assert is_archive(archive) == "zip"
    assert sorted(p.name for p in files) == ["x.json", "y.txt"]
    assert (tmp_path / "out" / "dir" / "x.json").read_bytes() == b'{"a": 1}'


def test_is_archive_says_none_for_other_files(tmp_path: Path) -> None:
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"not an archive at all" * 100)
    gz = tmp_path / "x.gz"
    import gzip

    gz.write_bytes(gzip.compress(b"just text, not a tar" * 100))

    assert is_archive(plain) is None
    assert is_archive(gz) is None
    with pytest.raises(InvalidInput, match="not a tar or zip"):
        safe_extract(plain, tmp_path / "out", max_total_bytes=MB)


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (_file("../evil", b"x"), r"'\.\./evil'.*escapes"),
        (_file("a/../../evil", b"x"), r"'a/\.\./\.\./evil'.*escapes"),
        (_file("/tmp/evil", b"x"), r"'/tmp/evil'.*absolute path"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), r"'link'.*links are refused"),
        (_special("hard", tarfile.LNKTYPE, "ok.txt"), r"'hard'.*links are refused"),
        (_special("fifo", tarfile.FIFOTYPE), r"'fifo'.*special files"),
        (_special("dev", tarfile.CHRTYPE), r"'dev'.*special files"),
        (_file("back\\slash", b"x"), r"backslash"),
    ],
)
def test_refuses_unsafe_tar_members_and_undoes(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], problem: str
) -> None:
    # A harmless file first, so that the refusal has something to undo.
    archive = _tar(tmp_path / "bad.tar.gz", [_file("ok.txt", b"fine"), member], "w:gz")
    dest = tmp_path / "deep" / "out"

    with pytest.raises(UnsafeArtifact, match=problem):
        safe_extract(archive, dest, max_total_bytes=MB)

    assert _leftovers(dest) == []
    assert not (tmp_path / "deep" / "evil").exists()
    assert not (tmp_path / "evil").exists()


def test_undo_leaves_what_was_already_in_dest(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    archive = _tar(tmp_path / "bad.tar", [_file("new.txt", b"x"), _file("../evil", b"x")])

    with pytest.raises(UnsafeArtifact):
        safe_extract(archive, dest, max_total_bytes=MB)

    assert _leftovers(dest) == [dest / "keep.txt"]


@pytest.mark.parametrize(
    ("name", "external_attr", "problem"),
    [
        ("../evil", 0, r"'\.\./evil'.*escapes"),
        ("/abs/evil", 0, r"'/abs/evil'.*absolute"),
        ("link", (stat.S_IFLNK | 0o777) << 16, r"'link'.*symbolic links"),
        ("fifo", (stat.S_IFIFO | 0o644) << 16, r"'fifo'.*not a regular file"),
    ],
)
def test_refuses_unsafe_zip_members(
    tmp_path: Path, name: str, external_attr: int, problem: str
) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        info = zipfile.ZipInfo(name)
        info.external_attr = external_attr
        zf.writestr(info, b"/etc/passwd")

    with pytest.raises(UnsafeArtifact, match=problem):
        safe_extract(archive, tmp_path / "out", max_total_bytes=MB)

    assert _leftovers(tmp_path / "out") == []
    assert not (tmp_path / "evil").exists()


def test_refuses_duplicate_members(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "dup.tar", [_file("a.txt", b"checked"), _file("a.txt", b"swapped")])

    with pytest.raises(UnsafeArtifact, match=r"'a.txt'.*more than once"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=MB)


def test_refuses_file_where_a_folder_was_implied(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "clash.tar", [_file("sub/a.txt", b"x"), _file("sub", b"y")])

    with pytest.raises(UnsafeArtifact, match="'sub': appears more than once"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=MB)
    assert _leftovers(tmp_path / "out") == []


def test_refuses_names_the_file_system_cannot_hold(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "long.tar", [_file("n" * 300, b"x")])

    with pytest.raises(UnsafeArtifact, match="cannot be written"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=MB)


def test_refuses_too_many_members(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "many.tar", [_file(f"f{i}", b"x") for i in range(5)])
    zipped = tmp_path / "many.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for i in range(5):
            zf.writestr(f"f{i}", b"x")

    for path in (archive, zipped):
        with pytest.raises(UnsafeArtifact, match=r"'f3'.*more than 3 members"):
            safe_extract(path, tmp_path / "out", max_total_bytes=MB, max_members=3)
        assert _leftovers(tmp_path / "out") == []


def test_refuses_total_size_over_the_limit(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "big.tar", [_file("a", b"1" * 600), _file("b", b"2" * 600)])

    with pytest.raises(UnsafeArtifact, match=r"'b'.*exceeds the limit of 1000 bytes"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=1000)
    assert _leftovers(tmp_path / "out") == []


def _zip_bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("model.safetensors", bytes(50 * MB))
    return path


def test_refuses_zip_bomb_by_ratio(tmp_path: Path) -> None:
    bomb = _zip_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < MB  # 50 MB of zeros deflate to ~50 KB

    with pytest.raises(UnsafeArtifact, match=r"'model.safetensors'.*compression ratio above 200"):
        safe_extract(bomb, tmp_path / "out", max_total_bytes=1 << 30)
    assert _leftovers(tmp_path / "out") == []


def test_refuses_zip_bomb_by_size_before_writing_it_all(tmp_path: Path) -> None:
    bomb = _zip_bomb(tmp_path / "bomb.zip")

    with pytest.raises(UnsafeArtifact, match=r"'model.safetensors'.*exceeds the limit"):
        safe_extract(bomb, tmp_path / "out", max_total_bytes=2 * MB, max_ratio=1e9)
    assert _leftovers(tmp_path / "out") == []


def test_refuses_gzip_tar_bomb(tmp_path: Path) -> None:
    bomb = _tar(tmp_path / "bomb.tar.gz", [_file("zeros", bytes(50 * MB))], "w:gz")

    with pytest.raises(UnsafeArtifact, match="compression ratio above 200"):
        safe_extract(bomb, tmp_path / "out", max_total_bytes=1 << 30)
    assert _leftovers(tmp_path / "out") == []


def test_refuses_bomb_hidden_in_tar_headers(tmp_path: Path) -> None:
    # tarfile reads PAX headers into memory; the decompressed stream itself is bounded.
    bomb = tmp_path / "pax.tar.gz"
    with tarfile.open(bomb, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("a.txt")
        info.pax_headers = {"comment": "x" * (20 * MB)}
        info.size = 1
        tf.addfile(info, io.BytesIO(b"a"))

    with pytest.raises(UnsafeArtifact, match=r"pax\.tar\.gz"):
        safe_extract(bomb, tmp_path / "out", max_total_bytes=MB, max_members=10)


def test_small_compressible_files_are_not_bombs(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "zeros.tar.gz", [_file("zeros", bytes(256 * 1024))], "w:gz")

    files = safe_extract(archive, tmp_path / "out", max_total_bytes=MB)

    assert [p.stat().st_size for p in files] == [256 * 1024]


def test_corrupt_archive_is_invalid_input(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [_file("a", os.urandom(100_000))], "w:gz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])

    with pytest.raises(InvalidInput, match="not a readable tar archive"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=MB)
    assert _leftovers(tmp_path / "out") == []
