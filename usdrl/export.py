"""ONNX export of :class:`usdrl.USDRL` models.

The exported graph takes one input, ``skeleton``: joint coordinates ``(N, C, T, V, M)``
float32 with a dynamic batch axis N and the model's fixed ``C, T, V, M``
(``config.input_shape``). Its one output is named after what it holds:

* ``embedding`` ``(N, 2H)``: the global feature, what :meth:`USDRL.encode` returns
  without normalisation;
* ``logits`` ``(N, num_classes)``: the clip classifier, ``model(x)`` (needs a head);
* ``frames`` ``(N, T, num_frame_classes)``: the frame-wise head,
  :meth:`USDRL.forward_frames` (needs a frame head).

The graph is traced by PyTorch's TorchScript-based exporter (``dynamo=False``: fast, and
needs only the ``onnx`` package); ``dynamo=True`` uses the ``torch.export``-based
exporter instead, which also needs ``onnxscript``. Install with ``pip install "usdrl[onnx]"``.
"""

import copy
import dataclasses
import inspect
import io
import json
import logging
import os
import platform
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._io import atomic_write
from ._version import __version__
from .errors import ConfigError, MissingDependencyError, OnnxExportError

logger = logging.getLogger(__name__)

#: Output kinds and what each needs from the model.
OUTPUTS = ("embedding", "logits", "frames")
INPUT_NAME = "skeleton"


@dataclasses.dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ``.onnx`` file.
        output: the output kind (``embedding``, ``logits`` or ``frames``), also the output's name.
        opset: the ONNX opset of the default domain.
        input_shape: ``(N, C, T, V, M)`` with ``N = -1`` (dynamic).
        output_shape: the output's shape with ``N = -1``.
        check: ``"passed"``, ``"skipped"`` (onnxruntime not installed) or ``"disabled"``.
        max_rel_error: ``max|onnx - eager| / max|eager|`` of the check, ``None`` without one.
        check_batch_size: the batch size the check ran at, ``None`` without one.
    """

    path: Path
    output: str
    opset: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    check: str
    max_rel_error: float | None = None
    check_batch_size: int | None = None

    def summary(self) -> str:
        """One line: what was written and how the check went."""
        line = (f"wrote {self.path} (opset {self.opset}, input {INPUT_NAME} {_shape(self.input_shape)}, "
                f"output {self.output} {_shape(self.output_shape)}); check ")
        if self.check == "passed":
            return line + (f"passed: onnxruntime at batch {self.check_batch_size}, "
                           f"max relative error {self.max_rel_error:.2e}")
        if self.check == "skipped":
            return line + "skipped: onnxruntime is not installed"
        return line + "disabled"


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join("N" if d == -1 else str(d) for d in shape) + ")"


class _ExportWrapper(nn.Module):
    """The model with one tensor in, ``skeleton (N, C, T, V, M)``, and one tensor out (see module doc)."""

    def __init__(self, model: nn.Module, output: str):
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, skeleton: torch.Tensor) -> torch.Tensor:
        if self.output == "logits":
            return self.model(skeleton)
        if self.output == "frames":
            return self.model.forward_frames(skeleton)
        return self.model.forward_head(self.model.forward_features(skeleton), pre_logits=True)


def _check_heads(model, output: str) -> None:
    if output not in OUTPUTS:
        raise ConfigError(f"unknown ONNX output {output!r}; expected one of {', '.join(OUTPUTS)}")
    if output == "logits" and model.head is None:
        raise ConfigError("output='logits' needs a classifier head, and this model has none (num_classes=0); "
                          "add one with model.reset_classifier(num_classes) and train it, "
                          "or export output='embedding'")
    if output == "frames" and model.frame_head is None:
        raise ConfigError("output='frames' needs a frame-wise head, and this model has none "
                          "(num_frame_classes=0); add one with model.reset_frame_classifier(num_classes) and "
                          "train it, or export output='embedding'")


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError('ONNX export needs the onnx package: pip install "usdrl[onnx]"') from None
    return onnx


def _adaptive_avg_pool1d_symbolic(input_length: int):
    """An ONNX translation of ``aten::adaptive_avg_pool1d`` on ``(n, d, input_length)`` inputs as a
    product with the fixed ``(input_length, output_length)`` averaging matrix.

    The TorchScript exporter handles adaptive pooling only when the output length divides the
    input length and the input length is static; :func:`usdrl.encoder.dense_feature` pools the
    ``M*V`` spatial tokens to ``T`` positions (e.g. 50 to 64), which is neither. The only such
    pooling in the model is that one, so its input length is the config's ``M*V``.
    """
    from torch.onnx import symbolic_helper

    @symbolic_helper.parse_args("v", "is")
    def adaptive_avg_pool1d(g, x, output_size):
        # (input_length, output_length): column j holds the weights of output position j
        weights = torch.nn.functional.adaptive_avg_pool1d(torch.eye(input_length)[None], output_size[0])[0]
        return g.op("MatMul", x, g.op("Constant", value_t=weights.float()))

    return adaptive_avg_pool1d


def _export_torchscript(wrapper: nn.Module, example: torch.Tensor, opset: int | None, output: str) -> bytes:
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    buffer = io.BytesIO()
    symbolics = {"aten::adaptive_avg_pool1d": _adaptive_avg_pool1d_symbolic(wrapper.model.config.spatial_tokens)}
    for name, symbolic in symbolics.items():
        torch.onnx.register_custom_op_symbolic(name, symbolic, 9)
    try:
        with warnings.catch_warnings():
            # The tracer warns about shape-derived Python values (T, V, M and the head count are
            # fixed in the graph by design) and the exporter about its own deprecation; the
            # check below is what tells whether the graph is right.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            torch.onnx.export(wrapper, (example,), buffer, input_names=[INPUT_NAME], output_names=[output],
                              dynamic_axes={INPUT_NAME: {0: "N"}, output: {0: "N"}}, opset_version=opset,
                              do_constant_folding=True, **kwargs)
    finally:
        for name in symbolics:
            torch.onnx.unregister_custom_op_symbolic(name, 9)
    return buffer.getvalue()


def _export_dynamo(wrapper: nn.Module, example: torch.Tensor, opset: int | None, output: str) -> bytes:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise MissingDependencyError("dynamo=True needs the onnxscript package: pip install onnxscript") from None
    batch = torch.export.Dim("N", min=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        program = torch.onnx.export(wrapper, (example,), None, input_names=[INPUT_NAME], output_names=[output],
                                    dynamic_shapes={INPUT_NAME: {0: batch}}, opset_version=opset, dynamo=True,
                                    external_data=False, verbose=False)
    return program.model_proto.SerializeToString()


def _cuda_autocast_off():
    """Autocast off on the GPU too, in case the caller exports inside an autocast region."""
    if torch.cuda.is_available():
        return torch.autocast("cuda", enabled=False)
    return torch.autocast("cpu", enabled=False)


def _max_rel_error(onnx_out, eager: torch.Tensor) -> float:
    got = torch.from_numpy(onnx_out).double()
    want = eager.double()
    if got.shape != want.shape:
        raise OnnxExportError(f"the ONNX model returned shape {tuple(got.shape)}, the model {tuple(want.shape)}")
    scale = float(want.abs().max())
    return float((got - want).abs().max()) / max(scale, torch.finfo(torch.float32).tiny)


def export_onnx(model, path: str | os.PathLike, *, output: str = "embedding", opset: int | None = None,
                batch_size: int = 2, check: bool = True, rtol: float = 1e-4, dynamo: bool = False) -> OnnxExport:
    """Export ``model`` to an ONNX file at ``path`` (written atomically).

    Args:
        model: a :class:`usdrl.USDRL`. It is exported in float32 and eval mode on the CPU, with
            autocast off; the model itself is left as it was (a copy is exported when it is on
            another device or in another dtype).
        path: the ``.onnx`` file to write. It appears only once complete (and checked): a failure
            leaves an existing file as it was and no new one.
        output: ``"embedding"`` (global features ``(N, 2H)``), ``"logits"`` (``(N, num_classes)``,
            needs a classifier head) or ``"frames"`` (``(N, T, num_frame_classes)``, needs a frame head).
        opset: ONNX opset version; ``None`` takes the exporter's default.
        batch_size: batch size N of the example input ``(N, C, T, V, M)`` the graph is traced
            with; N stays dynamic in the file.
        check: run the file with onnxruntime on a random batch of ``batch_size + 1`` clips and
            compare to the eager model; skipped (and logged) when onnxruntime is not installed.
        rtol: largest accepted ``max|onnx - eager| / max|eager|``.
        dynamo: use the ``torch.export``-based exporter (needs ``onnxscript``) instead of the
            TorchScript-based one.

    Returns:
        an :class:`OnnxExport` naming the file, its opset, shapes and the check result.

    Raises:
        ConfigError: an unknown ``output``, or the head it needs is missing.
        MissingDependencyError: ``onnx`` (or, with ``dynamo=True``, ``onnxscript``) is not installed.
        OnnxExportError: the exporter failed, or the check found the file's outputs differ.
    """
    _check_heads(model, output)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    onnx = _import_onnx()
    path = Path(path)
    config = model.config
    params = list(model.parameters()) + list(model.buffers())
    on_cpu_fp32 = all(p.device.type == "cpu" and (p.dtype == torch.float32 or not p.is_floating_point())
                      for p in params)
    target = model if on_cpu_fp32 else copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    was_training = target.training
    target.eval()
    wrapper = _ExportWrapper(target, output).eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(batch_size, *config.input_shape, generator=generator)
    check_input = torch.randn(batch_size + 1, *config.input_shape, generator=generator)
    try:
        with torch.no_grad(), torch.autocast("cpu", enabled=False), _cuda_autocast_off():
            eager = wrapper(check_input)
            exporter = _export_dynamo if dynamo else _export_torchscript
            try:
                data = exporter(wrapper, example, opset, output)
            except MissingDependencyError:
                raise
            except Exception as exc:
                raise OnnxExportError(f"torch.onnx.export failed for output {output!r} "
                                      f"({'dynamo' if dynamo else 'TorchScript'} exporter): "
                                      f"{type(exc).__name__}: {exc}") from exc
    finally:
        target.train(was_training)

    proto = onnx.load_from_string(data)
    metadata = {
        "usdrl_version": __version__,
        "usdrl_output": output,
        "usdrl_config": config.to_json(),
        "usdrl_input": f"{INPUT_NAME} (N, C, T, V, M) float32 = (N, {', '.join(map(str, config.input_shape))})",
        "usdrl_layout": config.layout,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }
    if output == "logits" and config.class_names:
        metadata["class_names"] = json.dumps(config.class_names)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = (f"USDRL {config.encoder} ({config.layout}, hidden {config.hidden_size}) exported by "
                        f"usdrl {__version__}: {INPUT_NAME} -> {output}")
    onnx.checker.check_model(proto)
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset or -1)
    output_shape = (-1, *eager.shape[1:])
    result = {"check": "disabled", "max_rel_error": None, "check_batch_size": None}

    def write(tmp: Path) -> None:
        onnx.save(proto, str(tmp))
        if not check:
            return
        try:
            import onnxruntime
        except ImportError:
            logger.warning("%s: onnxruntime is not installed, so the exported file was not checked "
                           '(pip install "usdrl[onnx]")', path)
            result["check"] = "skipped"
            return
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
        (got,) = session.run([output], {INPUT_NAME: check_input.numpy()})
        error = _max_rel_error(got, eager)
        if not error <= rtol:
            raise OnnxExportError(f"the exported ONNX model does not reproduce the model's {output!r} output: "
                                  f"max relative error {error:.3g} > rtol {rtol:g} at batch {len(check_input)} "
                                  f"(onnxruntime {onnxruntime.__version__}, opset {opset_used}); "
                                  f"{path} was not written")
        result.update(check="passed", max_rel_error=error, check_batch_size=len(check_input))

    atomic_write(path, write)
    report = OnnxExport(path=path, output=output, opset=opset_used, input_shape=(-1, *config.input_shape),
                        output_shape=output_shape, **result)
    logger.info("%s", report.summary())
    return report


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError('the ONNX Runtime backend needs onnxruntime: pip install "usdrl[onnx]"') from None
    return onnxruntime


class _WithoutOnnxRuntimeRecords(logging.Filter):
    """Drops the root logger's records from onnxruntime's quantizer (a line per tensor it leaves alone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


def quantize_onnx(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write ``out``: the ONNX file ``path`` with ONNX Runtime's dynamic int8 quantization (atomically).

    The weights of the matrix products (``MatMul``, ``Gemm``) are stored as int8 per output
    channel and each product quantizes its input to uint8 on the fly; everything else stays
    float32, and so do the input and output. As in :meth:`usdrl.USDRL.quantize`, the stream
    embeddings stay float32: their input is raw coordinates, which per-tensor uint8 loses
    most (worst-clip embedding cosine to fp32 0.9975 with them quantized, on the embedded
    model). On CPUs without VNNI the weights use 7 bits (``reduce_range``), which avoids the
    overflow of their 16-bit intermediate sums.
    """
    _import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .precision import machine_info

    vnni = bool({"AVX512-VNNI", "AVX-VNNI"} & set(machine_info().cpu_features))
    out = Path(out)

    embeddings = _embedding_products(path)

    def write(tmp: Path) -> None:
        quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=not vnni, op_types_to_quantize=["MatMul", "Gemm"],
                         nodes_to_exclude=embeddings)

    quiet = _WithoutOnnxRuntimeRecords()
    logging.getLogger().addFilter(quiet)
    try:
        atomic_write(out, write)
    finally:
        logging.getLogger().removeFilter(quiet)
    return out


def _embedding_products(path: str | os.PathLike) -> list[str]:
    """Names of the matrix-product nodes of the stream embeddings in the ONNX file ``path`` (the exporter
    names nodes after their modules: ``/encoder/temporal/embed/embed.0/MatMul``)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.name for node in graph.node
            if node.op_type in ("MatMul", "Gemm") and re.search(r"/embeds?[./]", node.name)]


class OnnxRuntimeModel:
    """A usdrl ONNX file (see :func:`export_onnx`) run by ONNX Runtime on the CPU.

    ``encode`` takes and returns what :meth:`usdrl.USDRL.encode` does, so the two backends
    are interchangeable where clip embeddings are wanted.

    Attributes:
        path: the file.
        output: what it computes (``embedding``, ``logits`` or ``frames``; the name of its output).
        config: the model's :class:`usdrl.USDRLConfig`, from the file's metadata.
        session: the ``onnxruntime.InferenceSession``.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        onnxruntime = _import_onnxruntime()
        from .config import USDRLConfig

        self.path = Path(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "usdrl_config" not in metadata:
            raise ConfigError(f"{self.path}: not a usdrl export (no usdrl_config in its metadata); "
                              "export models with usdrl.export.export_onnx")
        self.output = metadata["usdrl_output"]
        self.config = USDRLConfig.from_dict(json.loads(metadata["usdrl_config"]))

    def encode(self, x, *, batch_size: int = 64, normalize: bool = False, convert_to_numpy: bool = False,
               show_progress_bar: bool | None = None):
        """The file's output for clips ``x`` ``(N, C, T, V, M)`` (or one clip ``(C, T, V, M)``), batch by
        batch; arguments and result as :meth:`usdrl.USDRL.encode` (``normalize`` for embeddings only)."""
        from tqdm.auto import tqdm

        from .errors import InputError

        if normalize and self.output != "embedding":
            raise InputError(f"normalize applies to embeddings; {self.path} computes {self.output!r}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        expected = self.config.input_shape
        single = tuple(x.shape) == expected
        data = x[None] if single else x
        if data.ndim != 5 or tuple(data.shape[1:]) != expected or len(data) == 0:
            raise InputError(f"expected clips (N, {', '.join(map(str, expected))}) for {self.path}, "
                             f"got {tuple(x.shape)}")
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        outputs = []
        for start in tqdm(range(0, len(data), batch_size), disable=not show_progress_bar, unit="batch"):
            batch = data[start:start + batch_size]
            batch = np.asarray(batch.cpu() if isinstance(batch, torch.Tensor) else batch, dtype=np.float32)
            finite = np.isfinite(batch).reshape(len(batch), -1).all(axis=1)
            if not finite.all():
                raise InputError(f"input contains NaN or infinite values in clip(s) "
                                 f"{(start + np.flatnonzero(~finite)).tolist()[:10]}")
            (result,) = self.session.run([self.output], {INPUT_NAME: batch})
            outputs.append(torch.from_numpy(result))
        result = torch.cat(outputs)
        if normalize:
            result = torch.nn.functional.normalize(result, dim=-1)
        if single:
            result = result[0]
        return result.numpy() if convert_to_numpy else result


def onnxruntime_model(model, *, int8: bool = False, threads: int | None = None) -> OnnxRuntimeModel:
    """An :class:`OnnxRuntimeModel` for ``model``: an exported ``.onnx`` file, a :class:`usdrl.USDRL`, or a
    name or folder for :meth:`usdrl.USDRL.from_pretrained` (exported with output ``embedding``).

    With ``int8`` the file is first quantized (:func:`quantize_onnx`). Intermediate files live in a
    temporary folder until the session has loaded them.
    """
    import tempfile

    from .model import USDRL

    if isinstance(model, str | os.PathLike) and Path(model).suffix == ".onnx" and not int8:
        return OnnxRuntimeModel(model, threads=threads)
    with tempfile.TemporaryDirectory(prefix="usdrl-onnx-") as folder:
        if isinstance(model, str | os.PathLike) and Path(model).suffix == ".onnx":
            path = Path(model)
        else:
            model = model if isinstance(model, USDRL) else USDRL.from_pretrained(model)
            path = export_onnx(model, Path(folder) / "model.onnx").path
        if int8:
            path = quantize_onnx(path, Path(folder) / "model-int8.onnx")
        return OnnxRuntimeModel(path, threads=threads)
