"""The one exception type for problems the user can fix."""


class UserError(Exception):
    """A bad path, an unreadable image, a wrong option: printed in one line by the CLI, exit status 2.

    Bugs raise ordinary exceptions (with a traceback); this is only for what the user can act on, so the
    message must name the file or option and say what to do.
    """


def first_line(err: BaseException) -> str:
    """The gist of a library's exception, for the end of a UserError message."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
