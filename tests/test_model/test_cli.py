"""model.cli: the shared flags of every entry point, and how batch commands name their outputs."""
import argparse
from pathlib import Path

import pytest

from model.selection import DEFAULT_MAX_FACES
from model.cli import (BatchOutputs, add_model_arguments, device_arg, number_arg,
                       output_names, positive_int)


def _parser(**kw) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demo")
    add_model_arguments(parser, **kw)
    return parser


def test_defaults_and_accepted_values():
    args = _parser().parse_args([])
    assert (args.weights, args.device, args.no_flip, args.max_faces, args.backend) == (
        None, "auto", False, DEFAULT_MAX_FACES, "auto")
    for text, value in [("cpu", "cpu"), ("CUDA", "cuda"), (" cuda:1 ", "cuda:1"), ("auto", "auto")]:
        assert device_arg(text) == value
    assert _parser().parse_args(["--device", "cuda:0", "--max-faces", "3"]).max_faces == 3


@pytest.mark.parametrize("value", ["tpu", "cuda:", "cuda:x", "gpu", "cpu:0", ""])
def test_a_bad_device_exits_2_naming_the_choices(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["--device", value])
    assert exit_info.value.code == 2
    assert f"argument --device: invalid device {value!r}: choose auto|cpu|cuda|cuda:N" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_max_faces_must_be_a_whole_number_of_at_least_1(value, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--max-faces", value])
    assert "expected a whole number of at least 1" in capsys.readouterr().err
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(value)


def test_the_old_flip_spelling_is_a_hidden_alias():
    parser = _parser()
    assert parser.parse_args(["--no-flip-test"]).no_flip and parser.parse_args(["--no-flip"]).no_flip
    help_text = parser.format_help()
    assert "--no-flip " in help_text and "--no-flip-test" not in help_text


def test_only_the_asked_flags_and_unknown_ones_refused():
    parser = _parser(flags=("weights", "device"), weights_required=True, weights_help="the checkpoint to score")
    assert "--max-faces" not in parser.format_help() and "the checkpoint to score" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --weights is required here
    with pytest.raises(ValueError, match=r"unknown model flags \['flip'\]"):
        _parser(flags=("flip",))


def test_output_names_are_stems_widened_only_where_they_clash():
    names = output_names([Path("dA/IMG_0001.png"), Path("dB/IMG_0001.png"), Path("dB/x/y.jpg")])
    assert names == {Path("dA/IMG_0001.png"): Path("dA/IMG_0001"), Path("dB/IMG_0001.png"): Path("dB/IMG_0001"),
                     Path("dB/x/y.jpg"): Path("y")}
    assert output_names([Path("/data/a/x.png"), Path("/tmp/b/y.png")]) == {
        Path("/data/a/x.png"): Path("x"), Path("/tmp/b/y.png"): Path("y")}
    assert output_names([Path("a.png"), Path("a.jpg"), Path("b.png")]) == {
        Path("a.png"): Path("a.png"), Path("a.jpg"): Path("a.jpg"), Path("b.png"): Path("b")}
    assert output_names([Path("/data/x/one.png")]) == {Path("/data/x/one.png"): Path("one")}


def test_batch_outputs_never_hand_out_a_path_twice(tmp_path):
    inputs = [Path("a.png"), Path("a.jpg"), Path("a.png.png")]  # a.png -> a.png.json, and so does a.png.png
    assert output_names(inputs) == {inputs[0]: Path("a.png"), inputs[1]: Path("a.jpg"), inputs[2]: Path("a.png")}
    outputs = BatchOutputs(inputs, several=True)
    assert outputs.path(tmp_path, inputs[0], ".json") == tmp_path / "a.png.json"
    assert outputs.path(tmp_path, inputs[1], ".json") == tmp_path / "a.jpg.json"
    with pytest.raises(ValueError, match=r"a.png.json was already written for a.png in this run; not "
                                         r"overwriting it with the result of a.png.png"):
        outputs.path(tmp_path, inputs[2], ".json")
    assert outputs.path(None, inputs[0], ".json") is None
    single = BatchOutputs([Path("x.png")], several=False)
    assert single.path(tmp_path / "out.json", Path("x.png"), ".json") == tmp_path / "out.json"


def test_number_arg_checks_its_range():
    score = number_arg(0, 1)
    assert score("0.5") == 0.5 and score("1") == 1.0 and number_arg(0)("1e3") == 1000.0
    for text, message in [("1.5", r"expected a number in \[0, 1\], got 1.5"), ("nan", "got nan"),
                          ("half", "got 'half'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            score(text)
    with pytest.raises(argparse.ArgumentTypeError, match="expected a number of at least 0, got -1.0"):
        number_arg(0)("-1")
