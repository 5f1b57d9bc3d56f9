"""The `gantrack` command (and `python -m gantrack`): signals are held from its first line.

Loading the CLI takes a fraction of a second (argparse, the params schema, the data registry).
A signal then would meet Python's defaults: SIGTERM ends the process with no line, Ctrl-C
prints a KeyboardInterrupt traceback. Held, it becomes the command's one-line stop.
"""

import sys

from gantrack.runtime import stop


def main() -> int:
    stop.hold()
    from gantrack import cli

    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
