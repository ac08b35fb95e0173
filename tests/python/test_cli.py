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


def test_the_shipped_job_configs_parse_and_follow_the_paper():
    """jobs/*.cfg are what a user submits: every key must be an option of its stage, and the training
    settings must be the paper's (K = 32, lr 3e-7, beta 0.05, Eq. 5's sequence-mean loss)."""
    for stage in ("vote", "train", "eval"):
        out = run(stage, "--config", f"jobs/{stage}.cfg", "--help")
        assert out.returncode == 0, (stage, out.stderr)
    out = run("train", "--config", "jobs/train.cfg", "--help").stdout.split("options (", 1)[1]
    for key, value in (("samples", "32"), ("lr", "3e-07"), ("beta", "0.05"), ("pairs-per-step", "16"),
                       ("loss-agg", "seq-mean-token-mean"), ("top-k", "0"), ("temperature", "1")):
        entry = out.split(f"--{key} ", 1)[1].split("\n  -", 1)[0]  # the option's help, wrapped lines included
        assert f"[{value} *]" in entry, entry



def test_evolve_stage_config_parses_and_errors_name_the_section(tmp_path):
    # jobs/evolve.cfg: every section parses; the run then stops at the missing image pool, not at the file.
    out = run("evolve", "--stage-config", "jobs/evolve.cfg", "--run", str(tmp_path / "ok"), "--model", "m",
              "--images", str(tmp_path / "no-such-pool"))
    assert out.returncode == 1 and "no-such-pool" in out.stderr and "stage-config" not in out.stderr, out.stderr
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[train]\nsamplez = 4\n")
    out = run("evolve", "--run", str(tmp_path / "r"), "--model", "m", "--images", "x", "--stage-config", str(cfg))
    assert out.returncode == 2 and "samplez" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
