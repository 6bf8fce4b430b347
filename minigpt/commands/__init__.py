"""One module per `minigpt` command, each with `run(command, args)`.

A command module imports at its top only what building its parser needs (argparse, sampling
defaults, prompt style names: no torch, no Lightning), so `--help` and usage errors answer at
once; what the command runs, it imports inside `run`.
"""
