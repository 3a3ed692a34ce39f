"""Typed errors. Each prints as one line on the CLI with a fixed exit status.

Exit statuses (also in the README):
    1  a check failed (parity over tolerance, export validation, engine build)
    2  bad input (a file, an option, a recipe key, a shape)
    3  the environment lacks something (an optional package, a GPU)
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Optional


class RnnDeployError(Exception):
    """Base class. ``str(err)`` is the one line the CLI prints.

    Args:
        message: what is wrong, naming the file/option/tensor concerned.
        hint: what would work instead (appended after an em dash).
    """

    exit_code = 1

    def __init__(self, message: str, hint: Optional[str] = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} — {hint}")


# -- bad input (exit 2) ---------------------------------------------------------------
class UsageError(RnnDeployError):
    """The user asked for something that cannot work as given."""

    exit_code = 2


class RecipeError(UsageError):
    """A recipe file is malformed: unknown key, wrong type, missing section."""


class DataError(UsageError):
    """A dataset file is missing, unreadable, or fails its checksum."""


class CheckpointError(UsageError):
    """A checkpoint directory is missing files, fails its manifest, or is unsafe."""


class SpecError(UsageError):
    """A model spec (or the ONNX metadata holding it) is missing or inconsistent."""


class KerasModelError(UsageError):
    """A Keras model file is unreadable, holds weights only, or uses what the converter cannot express."""


class ShapeError(UsageError):
    """An input's name, dtype or shape does not fit the model or engine profile."""


class EngineFileError(UsageError):
    """An engine file is truncated, corrupt, or was built for another TensorRT/GPU."""


# -- a check failed (exit 1) ------------------------------------------------------------
class ExportError(RnnDeployError):
    """Export failed, or the exported file did not validate against PyTorch."""


class EngineBuildError(RnnDeployError):
    """TensorRT could not parse or build the network."""


class ParityError(RnnDeployError):
    """Outputs of two runtimes differ beyond tolerance (or contain NaN/Inf)."""


# -- environment (exit 3) ---------------------------------------------------------------
class MissingDependencyError(RnnDeployError):
    """An optional package is not installed. Names the extra that provides it."""

    exit_code = 3

    def __init__(self, package: str, extra: str, purpose: str = "", hint: Optional[str] = None):
        self.package = package
        self.extra = extra
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"{package} is not installed{what}",
            hint or f"install it with: pip install 'rnndeploy[{extra}]'",
        )


class DeviceError(RnnDeployError):
    """No usable GPU / CUDA runtime for a command that needs one."""

    exit_code = 3


def first_line(exc: BaseException, limit: int = 600) -> str:
    """The first non-blank line of ``str(exc)``, stripped and cut at ``limit`` characters
    (the exception's type name when it says nothing): how a caught third-party error
    becomes part of one clear line."""
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__
