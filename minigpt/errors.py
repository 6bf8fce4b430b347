"""The one exception type minigpt raises for problems a user can fix."""


class MinigptError(Exception):
    """Bad input from the user: the message is one line that names the culprit and the fix.

    The command-line entry point prints it without a traceback and exits with status 2.
    """
