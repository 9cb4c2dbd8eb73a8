"""The one exception type for mistakes a user can cause (bad data, bad options, bad files).

The CLI turns it into a single line on stderr and a non-zero exit; library users can catch it.
"""


class PretextError(Exception):
    """A problem with the user's input, explained in one sentence."""
