"""Words for people: a count with its noun in the right number ("1 face", "2 faces").

Plain Python, no imports, at the bottom of the packages: the command lines and the app's messages
all count with it.
"""


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun`` in the right number: "1 face", "0 faces", "2 test faces".

    Args:
        count: how many.
        noun: the singular, made plural with "s" unless ``plural`` is given ("1 box", "2 boxes").
    """
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
