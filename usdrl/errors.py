"""The library's exception family.

Every error the library raises on purpose derives from :class:`USDRLError`, and also from
the built-in type a caller would naturally catch (``ValueError`` for bad input,
``OSError`` for files that cannot be read), so ``except ValueError`` keeps working.
"""


class USDRLError(Exception):
    """Base class of every error raised on purpose by usdrl.

    ``keywords`` lists the Python names the message mentions as the thing to change (arguments
    such as ``batch_size``, or functions such as ``linear_probe``): the command line prints
    them as what the user types there (``--batch-size``, ``usdrl linear-probe``).
    """

    def __init__(self, *args, keywords: tuple[str, ...] = ()):
        super().__init__(*args)
        self.keywords = tuple(keywords)


class InputError(USDRLError, ValueError):
    """A tensor or array handed to the model has the wrong shape, dtype or values."""


class ConfigError(USDRLError, ValueError):
    """A configuration is inconsistent or names something that does not exist."""


class CheckpointError(USDRLError, ValueError):
    """A checkpoint file does not match the model it is loaded into."""


class WeightsNotFoundError(USDRLError, OSError):
    """Pretrained weights could not be found locally, in the cache or on the Hub."""


class DataFormatError(USDRLError, ValueError):
    """A data file is malformed; the message names the file and the line or field."""


class MissingDependencyError(USDRLError, ImportError):
    """An optional feature needs a package that is not installed; the message says how to get it."""


class TrainingDivergedError(USDRLError, RuntimeError):
    """The training loss became non-finite or exploded; the last good checkpoint is kept."""


class CheckpointWriteError(USDRLError, OSError):
    """A checkpoint could not be written (the disk is full, say); the earlier ones are untouched."""


class OnnxExportError(USDRLError, RuntimeError):
    """The ONNX exporter failed, or the exported file does not reproduce the model's outputs."""
