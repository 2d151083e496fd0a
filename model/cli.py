"""One command-line vocabulary for every entry point that runs the model.

``add_model_arguments`` adds the shared flags (``--weights``, ``--device``, ``--no-flip``,
``--max-faces``, ``--backend``) with the same spelling, defaults and help text to
``model.predict``, ``model.video``, ``model.annotate``, ``training.evaluate``, ``training.train``
and ``python -m app``. Bad values are refused by argparse at parse time (exit status 2) with a
message that names the value and the choices. ``BatchOutputs`` names the outputs of a command
that takes several inputs (``model.predict``, ``model.video``) without ever writing one twice.
"""
from __future__ import annotations

import argparse
import os
import re
from collections import Counter
from pathlib import Path

from model.backends import add_backend_argument
from model.selection import DEFAULT_MAX_FACES, FaceFilter


DEVICE_CHOICES = "auto|cpu|cuda|cuda:N"
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")

# Which shared flags an entry point takes (all by default).
MODEL_FLAGS = ("weights", "device", "no_flip", "max_faces", "backend")


def device_arg(text: str) -> str:
    """argparse type of ``--device``: "auto", "cpu", "cuda" or "cuda:N"; anything else is refused."""
    value = text.strip().lower()
    if not _DEVICE.match(value):
        raise argparse.ArgumentTypeError(f"invalid device {text!r}: choose {DEVICE_CHOICES}")
    return value


def positive_int(text: str) -> int:
    """argparse type of a whole number of at least 1 (``--max-faces``, ``--batch-size``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def number_arg(low: float, high: float | None = None):
    """argparse type of a number in [low, high] (no upper bound when ``high`` is None), e.g. a score
    threshold ``number_arg(0, 1)``; the error names the value and the range."""
    wanted = f"a number in [{low:g}, {high:g}]" if high is not None else f"a number of at least {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not (low <= value and (high is None or value <= high)):  # NaN fails both
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    parse.__name__ = "number"  # argparse names the type in some messages
    return parse


def add_model_arguments(parser: argparse.ArgumentParser, *, flags=MODEL_FLAGS, weights_required: bool = False,
                        weights_help: str | None = None) -> None:
    """Add the shared model flags named in ``flags`` to ``parser``.

    Args:
        parser: the entry point's parser (or an argument group).
        flags: a subset of ``MODEL_FLAGS``.
        weights_required: ``--weights`` must be given (evaluation of a chosen checkpoint).
        weights_help: the entry point's own help for ``--weights``.

    ``--no-flip`` sets ``args.no_flip``; the old spelling ``--no-flip-test`` is a hidden alias.
    """
    unknown = set(flags) - set(MODEL_FLAGS)
    if unknown:
        raise ValueError(f"unknown model flags {sorted(unknown)}; choose from {', '.join(MODEL_FLAGS)}")
    group = parser.add_argument_group("model")
    if "weights" in flags:
        group.add_argument("--weights", default=None, required=weights_required, help=weights_help or (
            "checkpoint path or URL: an mmpose 0.x/1.x file or a training checkpoint (default: the official "
            "mmpose weights, cached in the torch hub folder and downloaded once when online)"))
    if "device" in flags:
        group.add_argument("--device", type=device_arg, default="auto", metavar=DEVICE_CHOICES,
                           help="where the network runs: auto (CUDA when present, else CPU), cpu, cuda or "
                                "cuda:N (default: auto)")
    if "no_flip" in flags:
        group.add_argument("--no-flip", dest="no_flip", action="store_true",
                           help="turn off test-time flip (one forward instead of two; slightly less accurate)")
        group.add_argument("--no-flip-test", dest="no_flip", action="store_true", help=argparse.SUPPRESS)
    if "max_faces" in flags:
        group.add_argument("--max-faces", type=positive_int, default=DEFAULT_MAX_FACES, metavar="N",
                           help=f"most faces per image that get landmarks, the most confident first; a "
                                f"warning says when an image has more (default: {DEFAULT_MAX_FACES})")
    if "backend" in flags:
        add_backend_argument(group)


def add_face_filter_arguments(parser: argparse.ArgumentParser, defaults: FaceFilter = FaceFilter()) -> None:
    """Add ``--min-score`` and ``--min-size`` (``model.selection``: which detections get landmarks),
    with ``defaults``' values (the uploads' by default: every face MTCNN returns)."""
    group = parser.add_argument_group("faces")
    group.add_argument("--min-score", type=number_arg(0, 1), default=defaults.min_score, metavar="S",
                       help="smallest detector score a face must have; real faces score 0.99+, hands and "
                            f"prints often lower (default: {defaults.min_score:g})")
    group.add_argument("--min-size", type=number_arg(0), default=defaults.min_size, metavar="PX",
                       help=f"smallest shorter side of a face box, pixels (default: {defaults.min_size:g})")


def face_filter_from_args(args: argparse.Namespace) -> FaceFilter:
    """The ``FaceFilter`` of parsed ``--min-score``, ``--min-size`` and ``--max-faces``."""
    return FaceFilter(args.min_score, args.min_size, getattr(args, "max_faces", DEFAULT_MAX_FACES))


def output_names(inputs: list[Path]) -> dict[Path, Path]:
    """Each input's output path inside an output folder, without the output suffix.

    The input's stem (``photos/x.png`` -> ``x``) when no other input has it; inputs that share a stem
    get their path relative to the inputs' common folder (``dA/x.png``, ``dB/x.png`` -> ``dA/x``,
    ``dB/x``), and inputs that differ only by suffix keep it (``a.png``, ``a.jpg`` -> ``a.png``,
    ``a.jpg``). Distinct files get distinct names; the same set of inputs, the same names.
    """
    absolute = [Path(os.path.abspath(p)) for p in inputs]
    common = Path(os.path.commonpath([p.parent for p in absolute]))
    relative = [p.relative_to(common) for p in absolute]
    names = [Path(rel.stem) for rel in relative]
    for longer in ([rel.with_suffix("") for rel in relative], relative):
        counts = Counter(names)
        names = [wider if counts[name] > 1 else name for name, wider in zip(names, longer)]
    return dict(zip(inputs, names))


class BatchOutputs:
    """Where a batch command writes each input's results, and a guard that no path is written
    twice in one run.

    Args:
        inputs: the inputs of the run, as given (``output_names`` maps them).
        several: ``True``: an output option names a folder (file names from ``output_names``);
            ``False`` (one input): it names the output file itself.
    """

    def __init__(self, inputs: list[Path], several: bool) -> None:
        self.several = several
        self.names = output_names(inputs) if several else {}
        self.written: dict[Path, Path] = {}  # output -> the input it was written for

    def path(self, option: Path | None, source: Path, suffix: str) -> Path | None:
        """The output for ``source`` under ``option`` (a file or a folder), or ``None`` when not asked.

        Raises ``ValueError`` when this run already wrote that path (for another input or output).
        """
        if option is None:
            return None
        path = option / (str(self.names[source]) + suffix) if self.several else option
        earlier = self.written.get(path)
        if earlier is not None:
            raise ValueError(f"{path} was already written for {earlier} in this run; not overwriting it "
                             f"with the result of {source}")
        self.written[path] = source
        return path
