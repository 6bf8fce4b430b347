"""How fast the command line answers: --help, and the first generated token.

    MINIGPT_DATA_DIR=../shared/data python benchmarks/startup.py
    python benchmarks/startup.py --checkout /path/to/an/older/minigpt   # the same, for another version

Each command runs in a fresh process, `--repeats` times, taking turns; the figure is the median
wall time. "first token" is the time from starting `minigpt generate` on a pretrain-small
checkpoint to the first generated character on its stdout. `import torch` and `import lightning`
alone are timed beside them as the floors they are compared with.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = "ROMEO:"


def minigpt_command(checkout: Path) -> list[str]:
    """How to start `minigpt` from `checkout`'s source tree."""
    if checkout == REPO:
        return [sys.executable, "-m", "minigpt"]
    # This environment's editable install finds REPO's package through an import hook that comes
    # before sys.path: drop the hook, so that the other checkout is the one imported.
    boot = (
        "import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
        f"sys.path.insert(0, {str(checkout)!r}); sys.argv[0] = 'minigpt'; "
        "runpy.run_module('minigpt', run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", boot]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def first_token(command: list[str]) -> float:
    """Seconds until the process has written one character past the echoed prompt."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    seen = b""
    while len(seen.decode("utf-8", errors="ignore")) <= len(PROMPT):
        chunk = process.stdout.read(1)
        if not chunk:
            raise SystemExit(f"{' '.join(command)} ended before generating")
        seen += chunk
    elapsed = time.perf_counter() - start
    process.kill()
    process.wait()
    return elapsed


def checkpoint_for(checkout: Path, given: str | None) -> Path:
    """A pretrain-small checkpoint written by `checkout`'s own code (its format is that version's)."""
    if given:
        return Path(given)
    root = REPO / "benchmarks" / "out" / "startup" / checkout.name
    last = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    if not last.is_file():
        # pretrain-small's network; the weights' quality does not change how fast they load.
        subprocess.run(
            [*minigpt_command(checkout), "fit", f"--config={checkout / 'configs' / 'pretrain-small.yaml'}",
             "--trainer.max_steps=20", "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={root}"],
            check=True,
        )  # fmt: skip
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", default=str(REPO), help="the minigpt source tree to time (default: this one)")
    parser.add_argument("--ckpt_path", default=None, help="a pretrain-small checkpoint (default: train 20 steps)")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    checkout = Path(options.checkout).resolve()
    checkpoint = checkpoint_for(checkout, options.ckpt_path)
    minigpt = minigpt_command(checkout)
    commands = {
        "python -c 'import torch'": lambda: timed([sys.executable, "-c", "import torch"]),
        "python -c 'import lightning'": lambda: timed([sys.executable, "-c", "import lightning"]),
        "minigpt --help": lambda: timed([*minigpt, "--help"]),
        "minigpt generate --help": lambda: timed([*minigpt, "generate", "--help"]),
        "minigpt generate: first token": lambda: first_token(
            [*minigpt, "generate", f"--ckpt_path={checkpoint}", f"--prompt={PROMPT}", "--max_new_tokens=200"]
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(options.repeats):
        for name, run in commands.items():
            times[name].append(run())
    print(f"checkout: {checkout}  ({options.repeats} runs each, median)")
    for name, runs in times.items():
        print(f"{name:32s} {statistics.median(runs):6.2f} s   ({', '.join(f'{t:.2f}' for t in runs)})")


if __name__ == "__main__":
    main()
