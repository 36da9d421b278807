"""A restricted unpickler for annotation pickles: numpy arrays, dtypes, scalars and builtin containers.

A pickle names the callables that rebuild its objects. This unpickler resolves only these
names and refuses every other one with DataFormatError, before anything is imported or
called:

* numpy arrays: ``numpy.ndarray``, ``numpy.dtype``, ``_reconstruct`` and ``scalar`` from
  ``numpy.core.multiarray`` (numpy 1.x) or ``numpy._core.multiarray`` (numpy 2.x), and
  ``_frombuffer`` from ``numpy.core.numeric`` / ``numpy._core.numeric`` (protocol 5);
* builtins ``set``, ``frozenset``, ``list``, ``dict``, ``tuple``, ``bytearray``, ``complex``,
  ``bytes`` (only ``bytes()`` and ``bytes(b"...")``: protocol 0-2 pickles store empty bytes,
  e.g. an empty array's buffer, as ``bytes()``), and ``collections.OrderedDict``;
* ``_codecs.encode`` with the Latin-1 codec (protocol 0-2 pickles store bytes that way).

The numpy names are not bound to numpy's own functions: numpy trusts the state a pickle
hands to ``dtype.__setstate__`` and ``ndarray.__setstate__`` (a malformed dtype state can
crash the interpreter), so arrays and dtypes are rebuilt here from checked values, for
plain (non-structured) dtypes of kinds b, i, u, f, c, S, U and O.
"""

import builtins
import codecs
import collections
import io
import math
import pickle
import struct
from os import PathLike
from pathlib import Path

import numpy as np

from ..errors import DataFormatError

_NUMPY_MODULES = ("numpy.core", "numpy._core")
_DTYPE_KINDS = set("biufcSUO")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise pickle.UnpicklingError(message)


def _is_int(value) -> bool:
    return type(value) is int


class _DType:
    """A dtype being unpickled: ``numpy.dtype(code, align, copy)`` followed by ``__setstate__``."""

    def __init__(self, code, align=False, copy=True):
        _require(isinstance(code, str), f"dtype code must be a string, got {type(code).__name__}")
        self.code = code
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def build(self) -> np.dtype:
        dtype = np.dtype(self.code)
        _require(dtype.kind in _DTYPE_KINDS and dtype.fields is None and dtype.subdtype is None,
                 f"dtype {self.code!r} is not allowed")
        if self.state is None:
            return dtype
        state = self.state
        _require(isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4), "bad dtype state")
        byteorder, names, fields, subdtype, elsize, alignment, flags = state[1:8]
        _require(byteorder in ("<", ">", "|", "=") and names is None and fields is None and subdtype is None
                 and all(map(_is_int, (elsize, alignment, flags))) and (len(state) == 8 or state[8] is None),
                 "bad dtype state")
        if dtype.kind in "SU" and elsize > 0:
            chars, rest = divmod(elsize, 4 if dtype.kind == "U" else 1)
            _require(rest == 0, "bad string dtype size")
            dtype = np.dtype(f"{dtype.kind}{chars}")
        if byteorder in "<>" and dtype.byteorder != "|":
            dtype = dtype.newbyteorder(byteorder)
        return dtype


def _dtype(value) -> np.dtype:
    _require(isinstance(value, _DType), "expected a dtype")
    return value.build()


def _shape(value) -> tuple[int, ...]:
    _require(isinstance(value, tuple) and all(_is_int(n) and n >= 0 for n in value), "bad array shape")
    return value


def _check_buffer(data, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    _require(isinstance(data, bytes | bytearray | pickle.PickleBuffer), "array data must be bytes")
    with memoryview(data) as view:
        nbytes = view.nbytes
    _require(nbytes == math.prod(shape) * dtype.itemsize, "array data does not match its shape")


class _Array(np.ndarray):
    """An array being unpickled; turned into a plain ndarray once loading is done."""

    def __setstate__(self, state):
        _require(isinstance(state, tuple) and len(state) == 5 and state[0] == 1, "bad array state")
        _, shape, dtype, fortran, data = state
        shape, dtype = _shape(shape), _dtype(dtype)
        _require(isinstance(fortran, bool), "bad array order flag")
        if dtype.kind == "O":
            _require(isinstance(data, list) and len(data) == math.prod(shape), "object array data does not match")
        else:
            _check_buffer(data, dtype, shape)
        np.ndarray.__setstate__(self, (1, shape, dtype, fortran, data))


_NDARRAY = object()  # stands for numpy.ndarray, which may only be passed to _reconstruct


def _reconstruct(subtype, shape, code):
    _require(subtype is _NDARRAY and isinstance(code, bytes), "bad array reconstruction")
    _shape(shape)  # numpy writes (0,); the real shape comes with the state
    return np.ndarray.__new__(_Array, (0,), np.dtype("b"))


def _scalar(dtype, data):
    dtype = _dtype(dtype)
    if dtype.kind == "O":
        return data
    _check_buffer(data, dtype, ())
    return np.frombuffer(data, dtype=dtype)[0]


def _frombuffer(buffer, dtype, shape, order, axis_order=None):
    dtype, shape = _dtype(dtype), _shape(shape)
    _require(dtype.kind != "O" and order in ("C", "F", "K"), "bad buffer array")
    _check_buffer(buffer, dtype, shape)
    array = np.frombuffer(buffer, dtype=dtype)
    if order == "K" and axis_order is not None:
        _require(isinstance(axis_order, tuple) and sorted(axis_order) == list(range(len(shape))), "bad axis order")
        return array.reshape(shape).transpose(axis_order)
    return array.reshape(shape, order=order)


def _bytearray(data=b"", encoding=None):
    if isinstance(data, str) and encoding in ("latin-1", "latin1"):
        return bytearray(data, "latin-1")
    _require(isinstance(data, bytes | bytearray) and encoding is None, "bytearray needs bytes")
    return bytearray(data)


def _bytes(data=b""):
    _require(isinstance(data, bytes | bytearray), "bytes needs bytes")
    return bytes(data)


def _latin1_encode(text, encoding="utf-8"):
    _require(isinstance(text, str) and encoding in ("latin1", "latin-1"), "only Latin-1 _codecs.encode is allowed")
    return codecs.encode(text, "latin1")


_GLOBALS = {
    **{(f"{m}.multiarray", "_reconstruct"): _reconstruct for m in _NUMPY_MODULES},
    **{(f"{m}.multiarray", "scalar"): _scalar for m in _NUMPY_MODULES},
    **{(f"{m}.numeric", "_frombuffer"): _frombuffer for m in _NUMPY_MODULES},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DType,
    **{(m, name): getattr(builtins, name)
       for m in ("builtins", "__builtin__") for name in ("set", "frozenset", "list", "dict", "tuple", "complex")},
    **{(m, "bytearray"): _bytearray for m in ("builtins", "__builtin__")},
    **{(m, "bytes"): _bytes for m in ("builtins", "__builtin__")},
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
}


class _Unpickler(pickle._Unpickler):
    """The pure-Python unpickler, restricted.

    Not the C one: on malformed input the C unpickler sizes its memo table by the largest
    index a PUT opcode names, so a few bytes can make it allocate gigabytes. The Python
    one keeps the memo in a dict; its BYTEARRAY8 reader (which allocates the declared
    size up front) is replaced by one that checks the size against the input first.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, raw: bytes, source: str):
        super().__init__(io.BytesIO(raw))
        self.source = source
        self.size = len(raw)

    def find_class(self, module: str, name: str):
        try:
            return _GLOBALS[module, name]
        except KeyError:
            raise DataFormatError(f"{self.source}: refusing to load global {module}.{name} (only numpy arrays, "
                                  "dtypes and builtin containers are allowed)") from None

    def _load_bytearray8(self):
        (length,) = struct.unpack("<Q", self.read(8))
        _require(length <= self.size, "BYTEARRAY8 longer than the pickle")
        data = self.read(length)
        _require(len(data) == length, "pickle data was truncated")
        self.append(bytearray(data))

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8


def _finish(obj, memo: dict):
    """Replace the unpickling stand-ins in ``obj`` by plain arrays and dtypes (shared objects stay shared)."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, _Array):
        out = memo[key] = obj.view(np.ndarray)
        if out.dtype.kind == "O":
            for i, item in enumerate(out.flat):
                out.flat[i] = _finish(item, memo)
    elif isinstance(obj, _DType):
        out = memo[key] = obj.build()
    elif isinstance(obj, list):
        out = memo[key] = obj
        obj[:] = [_finish(item, memo) for item in obj]
    elif isinstance(obj, dict):
        out = memo[key] = obj
        items = [(_finish(k, memo), _finish(v, memo)) for k, v in obj.items()]
        obj.clear()
        obj.update(items)
    elif isinstance(obj, set):
        out = memo[key] = obj
        items = [_finish(item, memo) for item in obj]
        obj.clear()
        obj.update(items)
    elif isinstance(obj, tuple | frozenset):
        out = memo[key] = type(obj)(_finish(item, memo) for item in obj)
    else:
        out = obj
    return out


def restricted_load(source: str | PathLike | bytes) -> object:
    """Unpickle a file (path) or ``bytes``, allowing only the globals listed in the module docs.

    Raises DataFormatError naming the source for a refused global or a malformed pickle.
    """
    if isinstance(source, bytes):
        name, raw = "<bytes>", source
    else:
        name, raw = str(source), Path(source).read_bytes()
    try:
        return _finish(_Unpickler(raw, name).load(), {})
    except DataFormatError:
        raise
    except Exception as err:  # a malformed pickle can fail in many ways
        raise DataFormatError(f"{name}: not a readable pickle ({type(err).__name__}: {err})") from err
