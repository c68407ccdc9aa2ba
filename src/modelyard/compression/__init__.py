"""Compression: quantize, prune, cast, export, fine-tune and distill models, and report.

Each method turns a source version into a child; a job evaluates both on held-out data
and registers the child only if it passes its gate::

    from modelyard.compression import Data, compress, compare, measure, parse_method

    method = parse_method({"name": "quantize", "scheme": "dynamic_int8"})
    child = compress(method, source, Data(x_test, y_test, objective), work_dir)
    report = compare(measure(parent, parent_path, x_test, y_test, objective),
                     measure(child.module, child.artifact, x_test, y_test, objective))

Compressed catalog versions stay ``safetensors`` with ``params["compression"]`` saying how
to rebuild them; the serving layer calls :func:`restore_model`. Exports are ordinary ONNX,
TorchScript and ``torch.export`` versions. Heavy libraries (torchao, ONNX Runtime's
quantizer) are imported where they are used. The ``distill`` and ``fit`` functions are
imported from their modules (:mod:`modelyard.compression.distill`,
:mod:`modelyard.compression.fit`), whose names they share.
"""

from typing import TYPE_CHECKING

from modelyard.lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.compression.apply import (
        Child,
        Data,
        check_applicable,
        compress,
        quantize_backend,
    )
    from modelyard.compression.fit import FitHooks, FitStopped, distillation_loss
    from modelyard.compression.methods import (
        CastMethod,
        DistillOptions,
        ExportMethod,
        FineTuneMethod,
        FitOptions,
        Gate,
        Method,
        PruneMethod,
        QuantizeMethod,
        parse_method,
        parse_model,
    )
    from modelyard.compression.report import (
        compare,
        flat_metrics,
        gate_failure,
        measure,
        metric_name,
        objective_for,
        weight_stats,
    )
    from modelyard.compression.restore import (
        check_compressed_weights,
        expected_layout,
        parse_compression,
        restore_model,
    )
    from modelyard.compression.source import Source, load_module, preprocessor_for

__all__ = [
    "CastMethod",
    "Child",
    "Data",
    "DistillOptions",
    "ExportMethod",
    "FineTuneMethod",
    "FitHooks",
    "FitOptions",
    "FitStopped",
    "Gate",
    "Method",
    "PruneMethod",
    "QuantizeMethod",
    "Source",
    "check_applicable",
    "check_compressed_weights",
    "compare",
    "compress",
    "distillation_loss",
    "expected_layout",
    "flat_metrics",
    "gate_failure",
    "load_module",
    "measure",
    "metric_name",
    "objective_for",
    "parse_compression",
    "parse_method",
    "parse_model",
    "preprocessor_for",
    "quantize_backend",
    "restore_model",
    "weight_stats",
]

# Loaded on first use: importing a light submodule must not load PyTorch.
__getattr__ = lazy_exports(
    __name__,
    {
        "modelyard.compression.apply": (
            "Child",
            "Data",
            "check_applicable",
            "compress",
            "quantize_backend",
        ),
        "modelyard.compression.fit": (
            "FitHooks",
            "FitStopped",
            "distillation_loss",
        ),
        "modelyard.compression.methods": (
            "CastMethod",
            "DistillOptions",
            "ExportMethod",
            "FineTuneMethod",
            "FitOptions",
            "Gate",
            "Method",
            "PruneMethod",
            "QuantizeMethod",
            "parse_method",
            "parse_model",
        ),
        "modelyard.compression.report": (
            "compare",
            "flat_metrics",
            "gate_failure",
            "measure",
            "metric_name",
            "objective_for",
            "weight_stats",
        ),
        "modelyard.compression.restore": (
            "check_compressed_weights",
            "expected_layout",
            "parse_compression",
            "restore_model",
        ),
        "modelyard.compression.source": (
            "Source",
            "load_module",
            "preprocessor_for",
        ),
    },
)
