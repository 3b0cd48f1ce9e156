"""Where benchmark numbers come from: code version, checkpoints, option file, machine and date.

Every table (markdown header, CSV ``#`` lines, report) carries the same :class:`Provenance` record.
"""
import datetime
import hashlib
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch

import restorevar_plugin

_SHA256_CACHE = {}


def sha256_file(path, chunk_size=1 << 20):
    """Hex SHA-256 of a file, cached per (path, size, mtime) for the life of the process."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256_CACHE:
        digest = hashlib.sha256()
        with open(path, 'rb') as handle:
            for chunk in iter(lambda: handle.read(chunk_size), b''):
                digest.update(chunk)
        _SHA256_CACHE[key] = digest.hexdigest()
    return _SHA256_CACHE[key]


def git_commit(folder):
    """``<commit>`` (``+dirty`` when the work tree has changes) of the git checkout holding ``folder``, or None."""
    try:
        commit = subprocess.run(['git', '-C', str(folder), 'rev-parse', 'HEAD'], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(['git', '-C', str(folder), 'status', '--porcelain', '--untracked-files=no'],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f'{commit}+dirty' if status else commit


def device_description(device):
    """``'cpu (<processor>)'`` or ``'cuda:0 (<GPU name>)'``."""
    device = torch.device(device)
    if device.type == 'cuda':
        return f'{device} ({torch.cuda.get_device_name(device)})'
    return f'cpu ({platform.processor() or platform.machine()})'


@dataclass
class Provenance:
    """The facts printed with every table.

    Attributes:
        items (list[tuple[str, str]]): Ordered ``(key, value)`` pairs (version, commit, option file, ...).
        checkpoints (list[tuple[str, str, str]]): ``(file path, sha256, methods using it)`` per weight file.
    """

    items: list
    checkpoints: list = field(default_factory=list)

    def lines(self):
        """``key: value`` lines, then one ``checkpoint: <file name> sha256 <hex> (<path>; <methods>)`` line per file."""
        lines = [f'{key}: {value}' for key, value in self.items]
        lines += [f'checkpoint: {Path(path).name} sha256 {digest} ({path}; used by {", ".join(methods)})'
                  for path, digest, methods in self.checkpoints]
        return lines

    def markdown(self):
        """A bullet list (markdown)."""
        return '\n'.join(f'- {line}' for line in self.lines())

    def csv_comments(self):
        """``# key: value`` lines for the top of a CSV file."""
        return '\n'.join(f'# {line}' for line in self.lines())


def collect_provenance(option_file, device, checkpoints):
    """The provenance of a benchmark run.

    Args:
        option_file (Path): The benchmark option file.
        device (torch.device): Where the methods ran.
        checkpoints (list[tuple[str, str]]): ``(method label, checkpoint path)`` of every weight file used.

    Returns:
        Provenance
    """
    package_dir = Path(restorevar_plugin.__file__).parent
    commit = git_commit(package_dir)
    items = [
        ('restorevar_plugin', restorevar_plugin.__version__),
        ('git commit', commit or 'not run from a git checkout'),
        ('option file', f'{option_file} (sha256 {sha256_file(option_file)})'),
        ('device', device_description(device)),
        ('threads', str(torch.get_num_threads())),
        ('torch', torch.__version__),
        ('python', platform.python_version()),
        ('date', datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')),
    ]
    users = {}
    for method, path in checkpoints:
        users.setdefault(str(Path(path).resolve()), []).append(method)
    digests = [(path, sha256_file(path), methods) for path, methods in users.items()]
    return Provenance(items=items, checkpoints=digests)
