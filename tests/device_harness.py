"""A simulated accelerator on the CPU: catches code that would mix devices on a GPU, without one.

Under :class:`SimulatedAccelerator` (a ``TorchFunctionMode``) every tensor is either *on the
accelerator* or *on the host*, by where it came from, as it would be on a machine with a GPU:

* on the accelerator: what ``Tensor.to(device)`` (so ``Module.to(device)``) returns (a new
  tensor, as a real move makes, when it was on the host), what a
  factory given an explicit ``device=`` creates, a tensor's ``.grad`` and ``.data``, and every
  result of an operation with an accelerator tensor among its inputs;
* on the host: everything else (``torch.from_numpy``, a DataLoader's batches, factories without a
  device, the result of ``.cpu()``).

An operation that takes both an accelerator tensor and a host tensor of one or more dimensions
raises :class:`DeviceMixError` (a 0-dimensional host tensor is allowed, as CUDA allows it), and so
does ``.numpy()`` of an accelerator tensor. ``copy_`` (how ``load_state_dict`` fills parameters)
and an accelerator tensor indexed by a host index are allowed, as on CUDA.

By default the accelerator shares the host's device name (``cpu``), so any explicit ``device=``
counts as the accelerator. ``SimulatedAccelerator(named=True)`` gives it a name of its own,
:data:`ACCELERATOR` (``cpu:0``, which torch's CPU kernels accept): its tensors report that device,
only factories and moves naming it land there (``device="cpu"`` or none is the host, and
``.to("cpu")`` moves back), and random draws are checked as torch checks them on a GPU: a draw
must land on its generator's device. :meth:`SimulatedAccelerator.generator` makes a generator on
the accelerator; a plain ``torch.Generator()`` is on the host. This catches code that draws on, or
moves to, a device it names itself (``torch.device("cpu")``, the default device) instead of the
batch's or the generator's.
"""

import weakref

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten


class DeviceMixError(AssertionError):
    """An operation mixed accelerator and host tensors (it would fail on a GPU)."""


#: The accelerator's device under ``SimulatedAccelerator(named=True)``.
ACCELERATOR = torch.device("cpu", 0)


class AcceleratorGenerator(torch.Generator):
    """A generator on the simulated accelerator: its ``device`` is :data:`ACCELERATOR` (it draws the
    numbers a CPU generator with the same seed draws)."""

    @property
    def device(self) -> torch.device:
        return ACCELERATOR


_SET_DATA = torch.Tensor.data.__set__
_DEVICE = torch.Tensor.device.__get__
_ALLOWED = {torch.Tensor.copy_, torch.Tensor.__getitem__, _SET_DATA, torch._has_compatible_shallow_copy_type}


class SimulatedAccelerator(TorchFunctionMode):
    def __init__(self, named: bool = False):
        """``named``: the accelerator is spelt :data:`ACCELERATOR`, ``cpu`` is the host (see the module)."""
        super().__init__()
        self._on_device = weakref.WeakValueDictionary()
        self.named = named

    def generator(self, seed: int) -> AcceleratorGenerator:
        """A generator on the accelerator (``named`` only), seeded with ``seed``."""
        if not self.named:
            raise ValueError("a generator on the accelerator needs SimulatedAccelerator(named=True)")
        generator = AcceleratorGenerator()
        generator.manual_seed(seed)
        return generator

    def _names_accelerator(self, device) -> bool:
        """Whether an explicit ``device`` argument (``None``: none given) is the accelerator."""
        if device is None:
            return False
        return torch.device(device) == ACCELERATOR if self.named else True

    def on_device(self, tensor: torch.Tensor) -> bool:
        """Whether ``tensor`` is on the (simulated) accelerator."""
        return self._on_device.get(id(tensor)) is tensor

    def _mark(self, value) -> None:
        for item in tree_flatten(value)[0]:
            if isinstance(item, torch.Tensor):
                self._on_device[id(item)] = item

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.named and func == _DEVICE:
            return ACCELERATOR if self.on_device(args[0]) else func(*args, **kwargs)
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        device_inputs = [t for t in inputs if self.on_device(t)]
        if self.named and kwargs.get("generator") is not None:
            on_accelerator = isinstance(kwargs["generator"], AcceleratorGenerator)
            if on_accelerator != (bool(device_inputs) or self._names_accelerator(kwargs.get("device"))):
                raise DeviceMixError(f"{getattr(func, '__qualname__', func)} draws on the "
                                     f"{'host' if on_accelerator else 'accelerator'} with a generator on the "
                                     f"{'accelerator' if on_accelerator else 'host'}")
        if device_inputs and func is torch.Tensor.numpy:
            raise DeviceMixError("numpy() of a tensor on the accelerator (call .cpu() first)")
        if device_inputs and func not in _ALLOWED and func is not torch.Tensor.to:
            host = [tuple(t.shape) for t in inputs if not self.on_device(t) and t.ndim > 0]
            if host:
                raise DeviceMixError(f"{getattr(func, '__qualname__', func)} mixes tensors on the accelerator "
                                     f"with host tensors of shapes {host}")
        result = func(*args, **kwargs)
        if func == _SET_DATA and self.on_device(args[1]):
            self._mark(args[0])  # Module.to() moves a parameter by setting its data
        if func is torch.Tensor.cpu:
            return result.clone() if any(result is t for t in inputs) else result
        if func is torch.Tensor.to:
            return self._moved(result, args, kwargs, inputs)
        if device_inputs or self._names_accelerator(kwargs.get("device")):
            self._mark(result)
        return result

    def _moved(self, result, args, kwargs, inputs):
        """``Tensor.to``: onto the accelerator when given its device (or a tensor there); back to the host when
        given another (``named``); else where it was."""
        source, others = args[0], inputs[1:]
        if others:
            onto = self.on_device(others[0])
        else:
            device = torch._C._nn._parse_to(*args[1:], **kwargs)[0]
            onto = self.on_device(source) if device is None else self._names_accelerator(device)
        if onto != self.on_device(source) and result is source:
            result = result.clone()  # a move makes a new tensor; the one moved from stays where it was
        if onto:
            self._mark(result)
        return result
