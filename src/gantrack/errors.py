"""The one exception type for mistakes a user can fix (params, data, inputs)."""


class UserError(Exception):
    """A problem with the user's params, data or inputs.

    The CLI prints its message as one line on stderr and exits with code 2, so the message must
    say what is wrong and what is allowed (or how to fix it).
    """
