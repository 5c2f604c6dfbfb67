"""The one exception type users see: a one-line message that names the file and the problem."""


class CavgaError(Exception):
    """A problem with the user's input or files; the CLI prints it as one line, without a traceback."""
