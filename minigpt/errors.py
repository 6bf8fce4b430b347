"""The one exception type minigpt raises for problems a user can fix."""


class MinigptError(Exception):
    """Bad input from the user: the message is one line that names the culprit and the fix.

    The command-line entry point prints it without a traceback and exits with status 2.
    """


def first_line(error: BaseException) -> str:
    """The first line of an error's message (libraries often add detail below it), or its type name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
