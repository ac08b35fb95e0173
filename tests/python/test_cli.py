"""The evoq binary as a user meets it: subcommand list, config files applied to --help, one-line errors."""
import os
import subprocess

EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
SRC = os.environ.get("EVOQ_SOURCE_DIR", ".")


def run(*args, **kw):
    return subprocess.run([EVOQ, *args], capture_output=True, text=True, timeout=120, cwd=SRC, **kw)


def test_help_lists_the_subcommands():
    out = run("--help")
    assert out.returncode == 0
    for cmd in ["tokenize", "preprocess", "forward", "pairs", "eval", "generate", "score", "compare"]:
        assert f"\n  {cmd} " in out.stdout, cmd
    assert "debug-evo" not in out.stdout  # internal entry points are hidden


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("evoq ")


def test_config_file_values_show_in_help(tmp_path):
    out = run("--config", "jobs/example.cfg", "--help")
    assert out.returncode == 0, out.stderr
    assert "values from jobs/example.cfg" in out.stdout
    assert "tokenize" in out.stdout.split("values from")[1]
    cfg = tmp_path / "t.cfg"
    cfg.write_text("[tokenize]\nmodel = /some/model/dir\n")
    out = run("tokenize", "--config", str(cfg), "--help")
    assert out.returncode == 0
    assert "[/some/model/dir *]" in out.stdout
    # The global form applies the file to the command as well.
    out = run("--config", str(cfg), "tokenize", "--help")
    assert "[/some/model/dir *]" in out.stdout


def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path):
    cases = [
        ["tokenize", "--no-such-option"],
        ["nosuchcommand"],
        ["tokenize", "--config", str(tmp_path / "missing.cfg")],
        ["tokenize", "--model", str(tmp_path / "no-model")],
        ["preprocess", "--model", "tests/data/qwen2-vl-2b", "--image", str(tmp_path / "none.png"), "--out", str(tmp_path / "x.npy")],
    ]
    bad_cfg = tmp_path / "bad.cfg"
    bad_cfg.write_text("sampels = 3\n")
    cases.append(["tokenize", "--config", str(bad_cfg)])
    for args in cases:
        out = run(*args, input="hello")
        assert out.returncode != 0, args
        lines = [l for l in out.stderr.splitlines() if l.strip()]
        assert len(lines) == 1, (args, out.stderr)
        assert "Traceback" not in out.stderr and "terminate called" not in out.stderr
