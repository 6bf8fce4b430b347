"""What the `minigpt` commands run. arguments.py holds the argparse parsers (torch-free, so every
`--help` and usage error answers at once); each other module is a command's runner and imports
what it needs at its top, loaded by minigpt.cli only after the options parse.
"""
