"""Files written whole or not at all: a temporary file in the target's folder, then one rename.

Every output of the package (checkpoints, training states, tables, images, shipped demo weights) goes through
:func:`atomic_output`, so an interrupted run never leaves a half-written file behind.
"""
import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path, suffix='.tmp', mode=None):
    """Yield a temporary file name next to ``path``; when the block ends without error, rename it to ``path``.

    Args:
        path (str | Path): The final file; its folder is created when missing.
        suffix (str): Suffix of the temporary name (e.g. ``path.suffix`` for writers that pick the format
            from the extension).
        mode (int | None): Permission bits for the final file (``mkstemp`` creates it ``0o600``).

    Yields:
        str: The temporary file name to write to. It is removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix=suffix)
    os.close(handle)
    try:
        yield tmp_name
        if mode is not None:
            os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def write_text_whole(path, text):
    """Write ``text`` (UTF-8, newlines as given) to ``path`` whole or not at all."""
    with atomic_output(path) as tmp_name, open(tmp_name, 'w', encoding='utf-8', newline='') as stream:
        stream.write(text)


def write_bytes_whole(path, data):
    """Write ``data`` to ``path`` whole or not at all."""
    with atomic_output(path) as tmp_name, open(tmp_name, 'wb') as stream:
        stream.write(data)
