"""`tmaf bench compile-lengths`: its options are checked before anything compiles."""

import pytest

from tmaf_lab.bench import compile_lengths
from tmaf_lab.cli import main


@pytest.mark.parametrize("argv, message", [
    (["--lengths", "17,x"], "expected comma-separated sequence lengths"),
    (["--lengths", "17,0"], "0 below 1"),
    (["--steady-shape", "8xax512"], "expected comma-separated dims"),
])
def test_bad_options_are_one_error_line(argv, message, tmp_path, capsys):
    assert main(["bench", "compile-lengths", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_shapes_parse_as_dims():
    args = compile_lengths.build_parser().parse_args(
        ["--steady-shape", "8x256x512", "--steady-shape", "2x3x4", "--lengths", "5,6"])
    assert args.steady_shape == [(8, 256, 512), (2, 3, 4)] and args.lengths == (5, 6)
    assert args.device == "auto" and args.threads == 0
