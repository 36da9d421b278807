"""The machine's instruction sets and GPUs, and the compute precision that is fast on them.

:func:`machine_info` reports what decides speed: the CPU's vector and matrix extensions
(AVX2, AVX-512, VNNI, AVX512-BF16, AMX), the kernels PyTorch dispatches to (its CPU
capability, which ``ATEN_CPU_CAPABILITY`` can lower) and each GPU's compute capability
with its bf16 / TF32 support.

:func:`resolve_precision` turns a request (``"auto"``, ``"fp32"``, ``"tf32"``, ``"bf16"``,
``"fp16"``, ``"int8"`` or a ``torch.dtype``) into a :class:`Precision` for one device.
``"auto"`` picks, in this order:

* CUDA with bf16 (compute capability >= 8.0): bf16 autocast, TF32 for the products
  autocast leaves in fp32;
* CUDA without bf16: fp16 autocast;
* a CPU with native bf16 (AVX512-BF16 or AMX) *and* PyTorch's AVX-512 kernels: bf16 autocast,
  when one call's matrix products are large enough to pay for autocast's casts
  (:data:`CPU_BF16_MIN_WORK`; small models on one or two clips at a time run faster in fp32);
* anything else: fp32 (on a CPU without native bf16, bf16 is emulated and several times
  slower than fp32; ``"int8"`` is the fast inference path there).

Asking for bf16 where it is emulated works, and logs one warning saying so.
"""

import dataclasses
import logging
import os
import platform
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import ConfigError

logger = logging.getLogger(__name__)

#: Reported CPU features: name -> (``/proc/cpuinfo`` flag, ``torch.cpu`` probe used where cpuinfo is absent).
CPU_FEATURES = {
    "AVX2": ("avx2", "_is_avx2_supported"),
    "AVX-512": ("avx512f", "_is_avx512_supported"),
    "AVX512-VNNI": ("avx512_vnni", "_is_vnni_supported"),
    "AVX-VNNI": ("avx_vnni", None),
    "AVX512-BF16": ("avx512_bf16", "_is_avx512_bf16_supported"),
    "AMX-BF16": ("amx_bf16", "_is_amx_tile_supported"),
    "AMX-INT8": ("amx_int8", "_is_amx_tile_supported"),
    "AMX-FP16": ("amx_fp16", "_is_amx_fp16_supported"),
}

#: Precision names and their spellings.
_ALIASES = {
    "auto": "auto",
    "fp32": "fp32", "float32": "fp32",
    "tf32": "tf32",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16",
    "int8": "int8", "qint8": "int8",
}
_FROM_DTYPE = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
#: The autocast dtype of each reduced precision (fp32, tf32 and int8 run without autocast).
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """One CUDA device: ``name``, compute ``capability`` ``(major, minor)``, native ``bf16`` and ``tf32``."""

    index: int
    name: str
    capability: tuple[int, int]
    bf16: bool
    tf32: bool

    def summary(self) -> str:
        features = [f for f, has in (("bf16", self.bf16), ("TF32", self.tf32)) if has]
        return (f"cuda:{self.index} {self.name}, compute capability {self.capability[0]}.{self.capability[1]}"
                f"{', ' + ' + '.join(features) if features else ', no bf16 / TF32'}")


@dataclasses.dataclass(frozen=True)
class MachineInfo:
    """What decides speed here.

    Attributes:
        cpu_model: the CPU's name (``/proc/cpuinfo`` or ``platform.processor()``).
        cpu_features: the names in :data:`CPU_FEATURES` this CPU has.
        kernel_isa: PyTorch's CPU capability, the vector kernels it runs (``AVX512``, ``AVX2``,
            ``DEFAULT``, ...; ``ATEN_CPU_CAPABILITY`` lowers it).
        threads: torch intra-op threads.
        gpus: the CUDA devices.
    """

    cpu_model: str
    cpu_features: tuple[str, ...]
    kernel_isa: str
    threads: int
    gpus: tuple[GpuInfo, ...] = ()

    @property
    def cpu_bf16_instructions(self) -> bool:
        """The CPU has bf16 instructions (AVX512-BF16 or AMX)."""
        return bool({"AVX512-BF16", "AMX-BF16"} & set(self.cpu_features))

    @property
    def cpu_bf16(self) -> bool:
        """bf16 is native here: the CPU's bf16 instructions, and PyTorch's AVX-512 kernels that use them."""
        return self.cpu_bf16_instructions and self.kernel_isa.startswith("AVX512")

    def summary(self) -> str:
        """Two or more lines: the CPU (model, features, kernels, threads) and each GPU."""
        lines = [f"CPU: {self.cpu_model}; {' '.join(self.cpu_features) or 'none of ' + ', '.join(CPU_FEATURES)}; "
                 f"torch kernels {self.kernel_isa}; {self.threads} thread(s); native bf16: "
                 f"{'yes' if self.cpu_bf16 else 'no'}"]
        lines += [f"GPU: {gpu.summary()}" for gpu in self.gpus] or ["GPU: none"]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "cpu_bf16": self.cpu_bf16}


def _cpuinfo() -> tuple[str | None, set[str] | None]:
    """The model name and flags of the first processor in ``/proc/cpuinfo`` (``None`` where absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None
    fields = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = fields.get("flags")
    return fields.get("model name"), (set(flags.split()) if flags is not None else None)


def _cpu_features(flags: set[str] | None) -> tuple[str, ...]:
    def has(flag: str, probe: str | None) -> bool:
        if flags is not None:
            return flag in flags
        check = getattr(torch.cpu, probe, None) if probe else None
        return bool(check()) if check is not None else False

    return tuple(name for name, (flag, probe) in CPU_FEATURES.items() if has(flag, probe))


def machine_info() -> MachineInfo:
    """The CPU's instruction sets, PyTorch's kernels and the CUDA devices (see :class:`MachineInfo`)."""
    model, flags = _cpuinfo()
    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            capability = torch.cuda.get_device_capability(index)
            gpus.append(GpuInfo(index, torch.cuda.get_device_name(index), capability,
                                bf16=capability >= (8, 0), tf32=capability >= (8, 0)))
    return MachineInfo(cpu_model=model or platform.processor() or platform.machine() or "unknown",
                       cpu_features=_cpu_features(flags), kernel_isa=torch.backends.cpu.get_cpu_capability(),
                       threads=torch.get_num_threads(), gpus=tuple(gpus))


@dataclasses.dataclass(frozen=True)
class Precision:
    """A resolved compute precision for one device.

    Attributes:
        name: ``fp32``, ``tf32``, ``bf16``, ``fp16`` or ``int8``.
        autocast: the autocast dtype (``bf16`` / ``fp16``), ``None`` to run in float32.
        tf32: let CUDA run float32 matrix products in TF32.
        device_type: ``cpu``, ``cuda``, ...
    """

    name: str
    autocast: torch.dtype | None
    tf32: bool
    device_type: str

    @contextmanager
    def context(self):
        """Autocast to :attr:`autocast` and, with :attr:`tf32`, TF32 float32 products; restored on exit."""
        previous = torch.get_float32_matmul_precision()
        if self.tf32:
            torch.set_float32_matmul_precision("high")
        try:
            if self.autocast is None:
                yield
            else:
                with torch.autocast(self.device_type, dtype=self.autocast):
                    yield
        finally:
            torch.set_float32_matmul_precision(previous)


_warned: set[tuple[str, str]] = set()


def _warn_once(key: tuple[str, str], message: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def _cuda_gpu(device: torch.device, machine: MachineInfo) -> GpuInfo | None:
    index = device.index if device.index is not None else (torch.cuda.current_device() if torch.cuda.is_available()
                                                            else 0)
    return next((gpu for gpu in machine.gpus if gpu.index == index), None)


def precision_name(request) -> str:
    """The canonical name (``auto``, ``fp32``, ``tf32``, ``bf16``, ``fp16``, ``int8``) of a request:
    a name or alias, a ``torch.dtype``, or ``None`` (= ``fp32``)."""
    if request is None:
        return "fp32"
    if isinstance(request, torch.dtype):
        if request not in _FROM_DTYPE:
            raise ConfigError(f"dtype must be float32, bfloat16 or float16, got {request}")
        return _FROM_DTYPE[request]
    if isinstance(request, str) and request.lower() in _ALIASES:
        return _ALIASES[request.lower()]
    raise ConfigError(f"unknown precision {request!r}; expected auto, fp32, tf32, bf16, fp16, int8 "
                      "(or a torch.dtype)")


#: The smallest ``work`` (see :func:`call_work`) for which ``auto`` picks bf16 on a CPU: 4 clips of a hidden-128
#: DSTE (64 frames, 2 x 25 joints). Measured with ``benchmarks/encode_speed.py --sizes`` (CPU time, 1 thread,
#: AVX-512 + AMX): a hidden-128 model ran bf16 at 0.84x fp32 on 1 clip, 0.99x on 2, 1.16x on 4; hidden 256 at
#: 1.09x on 1 clip; hidden 512 at 1.30x on 1 clip and 2.0x on 4.
CPU_BF16_MIN_WORK = 4 * (64 + 50) * 128**2


def call_work(clips: int, tokens: int, hidden_size: int) -> int:
    """The size of one call's matrix products, ``clips * tokens * hidden_size**2``, ``tokens`` per clip (both
    streams: ``T + M * V`` for DSTE): what decides whether bf16 pays on a CPU (:data:`CPU_BF16_MIN_WORK`)."""
    return clips * tokens * hidden_size**2


def resolve_precision(request, device, *, training: bool = False, machine: MachineInfo | None = None,
                      work: int | None = None) -> Precision:
    """The :class:`Precision` that runs ``request`` on ``device`` (see the module doc for ``"auto"``).

    Args:
        request: ``"auto"``, a precision name (``fp32``, ``tf32``, ``bf16``, ``fp16``, ``int8``; also
            ``float32``, ``bfloat16``, ``float16``), a ``torch.dtype``, or ``None`` (fp32).
        device: where the model runs (``torch.device`` or string).
        training: for training; ``int8`` (inference only) and fp16 on a CPU are refused.
        machine: the machine to plan for; default :func:`machine_info` (tests inject one).
        work: the size of one call's matrix products (:func:`call_work`); on a CPU ``auto`` picks bf16
            only from :data:`CPU_BF16_MIN_WORK` on. ``None``: large (training batches).

    Explicit bf16 where it is emulated (a CPU without AVX512-BF16 / AMX, or PyTorch kernels below
    AVX-512; a GPU below compute capability 8.0) and TF32 where it does not exist run as asked
    (TF32 as fp32), with one warning each.
    """
    name = precision_name(request)
    device = torch.device(device)
    machine = machine or machine_info()
    cuda = device.type == "cuda"
    gpu = _cuda_gpu(device, machine) if cuda else None
    if name == "auto":
        if cuda:
            name = "bf16" if gpu is None or gpu.bf16 else "fp16"
        elif device.type == "cpu":
            pays = work is None or work >= CPU_BF16_MIN_WORK
            name = "bf16" if machine.cpu_bf16 and pays else "fp32"
        else:
            name = "fp32"
        logger.debug("precision auto on %s: %s", device, name)
    if name == "int8" and (training or device.type != "cpu"):
        raise ConfigError(f"int8 is dynamic quantization for CPU inference; got it for "
                          f"{'training' if training else 'device ' + str(device)}")
    if name == "fp16" and training and not cuda:
        raise ConfigError(f"fp16 training needs a CUDA device (loss scaling); got {device}: use bf16 or fp32")
    if name == "bf16":
        if device.type == "cpu" and not machine.cpu_bf16:
            reason = (f"torch runs its {machine.kernel_isa} kernels here" if machine.cpu_bf16_instructions
                      else "this CPU has no AVX512-BF16 or AMX")
            _warn_once(("bf16", "cpu"), "bf16 is emulated on this CPU (%s) and runs slower than fp32; use "
                       "precision/dtype 'auto' (fp32 here) or, for inference, 'int8'", reason)
        if gpu is not None and not gpu.bf16:
            _warn_once(("bf16", "cuda"), "bf16 is emulated on %s (compute capability %d.%d < 8.0): use 'auto' "
                       "(fp16 here)", gpu.name, *gpu.capability)
    tf32 = cuda and (gpu is None or gpu.tf32) and name in ("tf32", "bf16", "fp16")
    if name == "tf32" and not tf32:
        _warn_once(("tf32", device.type), "TF32 needs an Ampere or later GPU; %s runs fp32", device)
    return Precision(name=name, autocast=AUTOCAST_DTYPES.get(name), tf32=tf32, device_type=device.type)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` named by ``device``.

    ``"auto"`` (or ``None``): CUDA if available (``cuda:LOCAL_RANK`` under torchrun), else MPS,
    else the CPU. ``"cuda"``, ``"cuda:N"``, ``"mps"`` and ``"cpu"`` are taken as they are, and
    raise :class:`ConfigError` saying what this machine has when the device is absent.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r} asked for, but CUDA is not available here (torch "
                              f"{torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu or auto")
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"device {device!r} asked for, but this machine has {count} CUDA device(s): "
                              f"cuda:0..cuda:{count - 1}")
        return resolved if resolved.index is not None else torch.device("cuda", torch.cuda.current_device())
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} asked for, but MPS (Apple GPU) is not available here; use --device "
                          "cpu or auto")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    return resolved
