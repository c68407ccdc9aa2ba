"""Intake of model artifacts: each format is recognised and read; unsafe uploads are refused."""

from __future__ import annotations

import io
import itertools
import json
import os
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from modelyard.errors import InvalidInput, UnsafeArtifact, UnsupportedFormat
from modelyard.registry.artifacts import ArtifactInfo, inspect_artifact

SPEC: dict[str, Any] = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3}
LIMIT = 64 << 20
IN_FP32 = {"name": "input", "datatype": "FP32", "shape": [-1, 4]}


def _mlp() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()


def check_mlp(spec: dict[str, Any], weights: Path) -> dict[str, Any]:
    """A stand-in for the catalog's checker: the weights must fit an MLP spec."""
    from safetensors import safe_open

    sizes = [spec["input_shape"][0], *spec["hidden"], spec["num_outputs"]]
    expected = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        expected[f"{2 * i}.weight"] = [fan_out, fan_in]
        expected[f"{2 * i}.bias"] = [fan_out]
    with safe_open(str(weights), framework="pt") as f:
        found = {key: list(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    if found != expected:
        raise InvalidInput(f"weights {found} do not fit the spec {expected}")
    return {
        "inputs": [IN_FP32],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, sizes[-1]]}],
    }


def _inspect(path: Path, work: Path, **kwargs: Any) -> ArtifactInfo:
    options: dict[str, Any] = {
        "declared_format": None,
        "filename": path.name,
        "spec": None,
        "spec_checker": check_mlp,
        "max_unpacked_bytes": LIMIT,
    }
    options.update(kwargs)
    work.mkdir(exist_ok=True)
    return inspect_artifact(path, work_dir=work, **options)


def _save_safetensors(path: Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    save_file(_mlp().state_dict(), str(path), metadata=metadata)
    return path


# -- safetensors ---------------------------------------------------------------------


def test_safetensors_with_spec_in_metadata(tmp_path: Path) -> None:
    path = _save_safetensors(tmp_path / "m.safetensors", {"modelyard.spec": json.dumps(SPEC)})

    info = _inspect(path, tmp_path / "work")

    assert info.format == "safetensors"
    assert info.spec == SPEC
    assert info.signature == check_mlp(SPEC, path)
    assert info.files == {"model.safetensors": path}


def test_safetensors_with_spec_argument_and_no_name(tmp_path: Path) -> None:
    path = _save_safetensors(tmp_path / "upload")
    calls: list[tuple[dict[str, Any], Path]] = []

    def checker(spec: dict[str, Any], weights: Path) -> dict[str, Any]:
        calls.append((spec, weights))
        return check_mlp(spec, weights)

    info = _inspect(path, tmp_path / "work", filename=None, spec=SPEC, spec_checker=checker)

    assert info.format == "safetensors"
    assert calls == [(SPEC, path)]
    assert info.signature is not None
    assert info.signature["inputs"] == [IN_FP32]


def test_spec_argument_wins_over_metadata(tmp_path: Path) -> None:
    stale = {**SPEC, "hidden": [16]}
    path = _save_safetensors(tmp_path / "m.safetensors", {"modelyard.spec": json.dumps(stale)})

    assert _inspect(path, tmp_path / "work", spec=SPEC).spec == SPEC
    with pytest.raises(InvalidInput, match="do not fit the spec"):
        _inspect(path, tmp_path / "work")


def test_safetensors_without_spec_is_refused(tmp_path: Path) -> None:
    path = _save_safetensors(tmp_path / "m.safetensors")

    with pytest.raises(InvalidInput, match="a safetensors version needs a spec"):
        _inspect(path, tmp_path / "work")


def test_truncated_safetensors_is_refused(tmp_path: Path) -> None:
    path = _save_safetensors(tmp_path / "m.safetensors", {"modelyard.spec": json.dumps(SPEC)})
    data = path.read_bytes()
    path.write_bytes(data[:-20])

    with pytest.raises(InvalidInput, match="truncated"):
        _inspect(path, tmp_path / "work")


def test_safetensors_header_beyond_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes((10_000).to_bytes(8, "little") + b'{"a": 1}')

    with pytest.raises(InvalidInput, match="header length 10000 does not fit"):
        _inspect(path, tmp_path / "work")


def _raw_safetensors(header: dict[str, Any], data: bytes, pad_to: int = 0) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * max(0, pad_to - len(text))
    return len(text).to_bytes(8, "little") + text + data


def test_safetensors_unknown_dtype_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    header = {"w": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}}
    path.write_bytes(_raw_safetensors(header, bytes(8)))

    with pytest.raises(InvalidInput, match="tensor 'w' has unknown dtype 'Q9'"):
        _inspect(path, tmp_path / "work", spec=SPEC)


def test_safetensors_that_starts_like_a_pickle_is_not_one(tmp_path: Path) -> None:
    # A 640-byte header makes the file begin 0x80 0x02, a pickle's protocol-2 prefix.
    state = {k: v.contiguous() for k, v in _mlp().state_dict().items()}
    header: dict[str, Any] = {}
    data = b""
    for key, value in state.items():
        raw = value.numpy().tobytes()
        header[key] = {
            "dtype": "F32",
            "shape": list(value.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    path = tmp_path / "upload"
    path.write_bytes(_raw_safetensors(header, data, pad_to=640))
    assert path.read_bytes()[:2] == b"\x80\x02"

    info = _inspect(path, tmp_path / "work", filename=None, spec=SPEC)

    assert info.format == "safetensors"


# -- archives of spec.json + model.safetensors ---------------------------------------


def _pack(path: Path, files: dict[str, bytes]) -> Path:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        return path
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _spec_and_weights(tmp_path: Path, prefix: str = "") -> dict[str, bytes]:
    weights = _save_safetensors(tmp_path / "w.safetensors").read_bytes()
    return {f"{prefix}spec.json": json.dumps(SPEC).encode(), f"{prefix}model.safetensors": weights}


@pytest.mark.parametrize("name", ["model.tar.gz", "model.tar", "model.zip"])
def test_archive_of_spec_and_weights(tmp_path: Path, name: str) -> None:
    archive = _pack(tmp_path / name, _spec_and_weights(tmp_path))
    work = tmp_path / "work"

    info = _inspect(archive, work)

    assert info.format == "safetensors"
    assert info.spec == SPEC
    assert set(info.files) == {"spec.json", "model.safetensors"}
    assert all(work in path.parents for path in info.files.values())
    assert info.signature == check_mlp(SPEC, info.files["model.safetensors"])


def test_archive_found_by_content_and_declared_safetensors(tmp_path: Path) -> None:
    archive = _pack(tmp_path / "upload.tar.gz", _spec_and_weights(tmp_path, "mymodel/"))
    renamed = archive.rename(tmp_path / "upload")

    by_content = _inspect(renamed, tmp_path / "w1", filename=None)
    declared = _inspect(renamed, tmp_path / "w2", declared_format="safetensors")

    assert by_content.format == declared.format == "safetensors"
    assert by_content.spec == declared.spec == SPEC


def test_archive_with_other_contents_says_what_was_expected(tmp_path: Path) -> None:
    files = {**_spec_and_weights(tmp_path), "README.md": b"hi"}
    archive = _pack(tmp_path / "model.zip", files)

    expected = r"README\.md.*expected exactly spec\.json \+ model\.safetensors"
    with pytest.raises(InvalidInput, match=expected):
        _inspect(archive, tmp_path / "work")


def test_archive_with_bad_spec_json(tmp_path: Path) -> None:
    files = {**_spec_and_weights(tmp_path), "spec.json": b"{not json"}
    archive = _pack(tmp_path / "model.tar", files)

    with pytest.raises(InvalidInput, match=r"spec\.json is not valid JSON"):
        _inspect(archive, tmp_path / "work")


def _tar_with(path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w") as tf:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


def test_tar_with_parent_path_is_refused(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path / "m.tar", tarfile.TarInfo("../evil"), b"x")

    with pytest.raises(UnsafeArtifact, match=r"'\.\./evil'"):
        _inspect(archive, tmp_path / "work")
    assert not (tmp_path / "evil").exists()


def test_tar_with_absolute_path_is_refused(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path / "m.tar", tarfile.TarInfo(str(tmp_path / "abs-evil")), b"x")

    with pytest.raises(UnsafeArtifact, match="absolute path"):
        _inspect(archive, tmp_path / "work")
    assert not (tmp_path / "abs-evil").exists()


def test_tar_with_symlink_is_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("model.safetensors")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    archive = _tar_with(tmp_path / "m.tar", link)

    with pytest.raises(UnsafeArtifact, match=r"'model\.safetensors': links are refused"):
        _inspect(archive, tmp_path / "work")


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("spec.json", json.dumps(SPEC))
        zf.writestr("model.safetensors", bytes(50 << 20))

    with pytest.raises(UnsafeArtifact, match="exceeds the limit of 4194304 bytes"):
        _inspect(archive, tmp_path / "work", max_unpacked_bytes=4 << 20)
    with pytest.raises(UnsafeArtifact, match="compression ratio"):
        _inspect(archive, tmp_path / "work")
    assert list((tmp_path / "work").rglob("*.safetensors")) == []


# -- TorchScript ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript(tmp_path: Path, how: str) -> None:
    model = _mlp()
    example = torch.randn(2, 4)
    compiled = torch.jit.script(model) if how == "script" else torch.jit.trace(model, example)
    path = tmp_path / "model.pt"
    compiled.save(str(path))

    info = _inspect(path, tmp_path / "work")
    unnamed = _inspect(path.rename(tmp_path / "blob"), tmp_path / "work", filename=None)

    assert info.format == unnamed.format == "torchscript"
    assert info.spec is None
    assert info.signature == {
        "inputs": [{"name": "input", "datatype": None, "shape": None}],
        "outputs": [{"name": "output0", "datatype": None, "shape": None}],
    }


def test_torch_save_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(_mlp().state_dict(), path)

    for declared in (None, "torchscript"):
        with pytest.raises(
            UnsafeArtifact, match=r"pickle files are refused.*torch\.save checkpoint"
        ):
            _inspect(path, tmp_path / "work", declared_format=declared)


def test_legacy_torch_save_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    torch.save(_mlp().state_dict(), path, _use_new_zipfile_serialization=False)

    with pytest.raises(UnsafeArtifact, match=r"pickle files are refused: this is a pickle"):
        _inspect(path, tmp_path / "work")


def test_non_torchscript_zip_declared_torchscript(tmp_path: Path) -> None:
    path = _pack(tmp_path / "m.zip", {"x.txt": b"hello"})

    with pytest.raises(InvalidInput, match="not a TorchScript archive"):
        _inspect(path, tmp_path / "work", declared_format="torchscript")


# -- torch.export --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    program = torch.export.export(
        _mlp(), (torch.randn(2, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    path = tmp_path_factory.mktemp("pt2") / "model.pt2"
    torch.export.save(program, path)
    return path


def test_torch_export(tmp_path: Path, pt2: Path) -> None:
    info = _inspect(pt2, tmp_path / "work")
    unnamed = _inspect(pt2, tmp_path / "work", filename=None)

    assert info.format == unnamed.format == "torch_export"
    assert info.signature is not None
    assert info.signature["inputs"] == [IN_FP32]
    [output] = info.signature["outputs"]
    assert output["datatype"] == "FP32"
    assert output["shape"] == [-1, 3]
    assert isinstance(output["name"], str)


class _Evil:
    """Unpickling this creates a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _rewrite_pt2(
    source: Path,
    target: Path,
    edit: Callable[[str, bytes], bytes] = lambda rel, data: data,
    extra: dict[str, bytes] | None = None,
) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        root = src.namelist()[0].split("/")[0]
        for name in src.namelist():
            rel = name.split("/", 1)[1]
            dst.writestr(name, edit(rel, src.read(name)))
        for rel, data in (extra or {}).items():
            dst.writestr(f"{root}/{rel}", data)
    return target


def test_pt2_with_pickled_sample_inputs_is_refused(tmp_path: Path, pt2: Path) -> None:
    marker = tmp_path / "PWNED"
    buffer = io.BytesIO()
    torch.save(_Evil(marker), buffer)
    evil = _rewrite_pt2(
        pt2,
        tmp_path / "evil.pt2",
        lambda rel, data: buffer.getvalue() if rel.startswith("data/sample_inputs/") else data,
    )

    with pytest.raises(UnsafeArtifact, match=r"sample_inputs.*weights_only=True refuses it"):
        _inspect(evil, tmp_path / "work")
    assert not marker.exists()


def test_pt2_with_opaque_pickled_constant_is_refused(tmp_path: Path, pt2: Path) -> None:
    marker = tmp_path / "PWNED"
    config = {
        "config": {
            "evil": {
                "path_name": "opaque_obj_0",
                "is_param": False,
                "use_pickle": True,
                "tensor_meta": None,
            }
        }
    }

    def edit(rel: str, data: bytes) -> bytes:
        return json.dumps(config).encode() if rel.endswith("_constants_config.json") else data

    evil = _rewrite_pt2(
        pt2,
        tmp_path / "evil.pt2",
        edit,
        {"data/constants/opaque_obj_0": pickle.dumps(_Evil(marker))},
    )

    with pytest.raises(UnsafeArtifact, match="'data/constants/opaque_obj_0' holds pickled"):
        _inspect(evil, tmp_path / "work")
    assert not marker.exists()


def test_pt2_with_pickled_weight_is_refused(tmp_path: Path, pt2: Path) -> None:
    def edit(rel: str, data: bytes) -> bytes:
        if not rel.endswith("_weights_config.json"):
            return data
        config = json.loads(data)
        next(iter(config["config"].values()))["use_pickle"] = True
        return json.dumps(config).encode()

    evil = _rewrite_pt2(pt2, tmp_path / "evil.pt2", edit)

    with pytest.raises(UnsafeArtifact, match=r"stores '0\.weight' as a pickle"):
        _inspect(evil, tmp_path / "work")


def test_pt2_with_native_code_is_refused(tmp_path: Path, pt2: Path) -> None:
    evil = _rewrite_pt2(
        pt2, tmp_path / "evil.pt2", extra={"data/aotinductor/model/model.so": b"\x7fELF"}
    )

    with pytest.raises(UnsafeArtifact, match="AOTInductor compiled code"):
        _inspect(evil, tmp_path / "work")


def test_pt2_graph_calling_python_functions_is_refused(tmp_path: Path, pt2: Path) -> None:
    marker = tmp_path / "PWNED"

    def edit(rel: str, data: bytes) -> bytes:
        if not rel.startswith("models/"):
            return data
        program = json.loads(data)
        for node in program["graph_module"]["graph"]["nodes"]:
            if node["target"] == "torch.ops.aten.relu.default":
                node["target"] = "torch.os.system"
                node["inputs"] = [
                    {"name": "command", "arg": {"as_string": f"touch {marker}"}, "kind": 1}
                ]
        return json.dumps(program).encode()

    evil = _rewrite_pt2(pt2, tmp_path / "evil.pt2", edit)

    with pytest.raises(InvalidInput, match="not an allowed operator"):
        _inspect(evil, tmp_path / "work")
    assert not marker.exists()


# -- ONNX ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    torch.onnx.export(
        _mlp(),
        (torch.randn(2, 4),),
        str(path),
        dynamo=True,
        external_data=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_shapes=({0: "batch"},),
    )
    return path


def test_onnx(tmp_path: Path, onnx_file: Path) -> None:
    info = _inspect(onnx_file, tmp_path / "work")
    unnamed = _inspect(onnx_file, tmp_path / "work", filename=None)

    assert info.format == unnamed.format == "onnx"
    assert info.signature == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
    }
    assert info.files == {"model.onnx": onnx_file}


def test_onnx_with_bad_bytes_is_refused(tmp_path: Path, onnx_file: Path) -> None:
    data = onnx_file.read_bytes()
    path = tmp_path / "model.onnx"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(InvalidInput, match="not a valid ONNX model"):
        _inspect(path, tmp_path / "work")


def test_onnx_external_data_outside_the_artifact_is_refused(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 3])],
        [weight],
    )
    path = tmp_path / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())

    with pytest.raises(UnsafeArtifact, match=r"'w'.*'\.\./\.\./etc/passwd'.*outside the artifact"):
        _inspect(path, tmp_path / "work")


def test_spec_for_onnx_is_refused(tmp_path: Path, onnx_file: Path) -> None:
    with pytest.raises(InvalidInput, match="a spec applies to safetensors versions only"):
        _inspect(onnx_file, tmp_path / "work", spec=SPEC)


# -- pickles and unknown files -------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_raw_pickle_is_refused(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=protocol))

    with pytest.raises(UnsafeArtifact, match="pickle files are refused: this is a pickle"):
        _inspect(path, tmp_path / "work")


@pytest.mark.parametrize("name", ["model.pkl", "model.pickle", "model.joblib", "model.CKPT"])
def test_pickle_extensions_are_refused(tmp_path: Path, name: str) -> None:
    path = _save_safetensors(tmp_path / "upload", {"modelyard.spec": json.dumps(SPEC)})

    with pytest.raises(UnsafeArtifact, match=r"pickle files are refused.*upload safetensors"):
        _inspect(path, tmp_path / "work", filename=name)
    with pytest.raises(UnsafeArtifact, match=r"pickle files are refused"):
        _inspect(path, tmp_path / "work", declared_format="pickle")


def test_garbage_with_unknown_extension_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "model.xyz"
    path.write_bytes(b"\x13\x37 definitely not a model " * 10)

    with pytest.raises(UnsupportedFormat, match=r"cannot tell the format.*safetensors.*onnx"):
        _inspect(path, tmp_path / "work")


def test_unknown_declared_format_is_unsupported(tmp_path: Path) -> None:
    path = _save_safetensors(tmp_path / "m.safetensors")

    with pytest.raises(UnsupportedFormat, match="unknown format 'tflite'; accepted: safetensors"):
        _inspect(path, tmp_path / "work", declared_format="tflite")


def test_empty_upload_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")

    with pytest.raises(InvalidInput, match="empty"):
        _inspect(path, tmp_path / "work")
