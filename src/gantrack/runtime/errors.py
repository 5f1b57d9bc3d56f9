"""The one exception type for mistakes a user can fix (params, data, inputs)."""


class UserError(Exception):
    """A problem with the user's params, data or inputs.

    The CLI prints its message as one line on stderr and exits with code 2, so the message must
    say what is wrong and what is allowed (or how to fix it).
    """


def one_line(exc: BaseException) -> str:
    """`Type: first line of message`, so UserError messages built from exceptions stay one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def printable(text: str) -> str:
    """text with every character that is not printable escaped (a newline as \\n, ESC as
    \\x1b): one line stays one line, and a name from a file or a store cannot move the
    cursor, clear the screen or write the clipboard of the terminal it is printed on."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
