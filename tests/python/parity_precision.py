"""The tests compare evoq with fp32 oracles (transformers, PyTorch, hand-derived values), so the command
helpers run evoq in fp32 without autocast unless a test chooses a precision itself. The product's own
defaults (--dtype auto and --autocast auto: bf16 on CUDA and on CPUs with AVX512-BF16/AMX) are tested in
test_dtype_defaults.py, and scripts/demo.sh runs with them."""
import os

INFERENCE = {"vote", "estimate", "score", "compare", "eval", "generate"}


def pin_fp32(cmd):
    """`cmd` (an argument list that runs evoq, possibly under mpirun) with --dtype fp32 added to an
    inference command and --autocast off to `train`, when the command does not set them."""
    cmd = [str(c) for c in cmd]
    at = next((k for k, c in enumerate(cmd) if os.path.basename(c) == "evoq"), None)
    if at is None or at + 1 >= len(cmd):
        return cmd
    sub, rest = cmd[at + 1], cmd[at + 2:]
    given = lambda name: any(a == name or a.startswith(name + "=") for a in rest)  # noqa: E731
    if given("--help") or given("-h"):
        return cmd
    if sub in INFERENCE and not given("--dtype"):
        return cmd + ["--dtype", "fp32"]
    if sub == "train" and not given("--autocast"):
        return cmd + ["--autocast", "off"]
    return cmd
