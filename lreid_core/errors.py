"""One exception type for every user-facing error; the CLI prints it as one line and exits non-zero."""


class LReIDError(Exception):
    """A bad input (path, value, config key) described in one line that names the cause."""
