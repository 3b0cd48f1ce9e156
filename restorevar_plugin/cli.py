"""The ``basicsr`` console script (also ``python -m restorevar_plugin.cli``).

Before any subcommand runs, every installed distribution that declares an entry point in the group
``basicsr.plugins`` is imported (restorevar_plugin declares itself), so third-party archs, models and
datasets are registered next to BasicSR's and ours.
"""
import argparse
import importlib
import sys
from importlib import metadata

from restorevar_plugin.checkpoints import CheckpointError
from restorevar_plugin.commands import COMMAND_MODULES
from restorevar_plugin.harness import OptionError
from restorevar_plugin.models.plugin_base_model import NonFiniteTrainingError
from restorevar_plugin.registry_utils import UnknownRegistryNameError

PLUGIN_GROUP = 'basicsr.plugins'


def load_plugins():
    """Import every module declared under the ``basicsr.plugins`` entry-point group.

    Returns:
        list[str]: The imported module names, in entry-point order.
    """
    loaded = []
    for entry_point in metadata.entry_points(group=PLUGIN_GROUP):
        entry_point.load()
        loaded.append(entry_point.value)
    return loaded


def build_parser():
    """The argument parser with one sub-parser per module in ``COMMAND_MODULES``."""
    parser = argparse.ArgumentParser(
        prog='basicsr', description='BasicSR with the restorevar_plugin harness (RestoreVAR and baselines).')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv=None):
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    import restorevar_plugin  # noqa: F401  (shims + our registrations even when not installed as a dist)

    load_plugins()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (UnknownRegistryNameError, OptionError, CheckpointError, NonFiniteTrainingError, FileNotFoundError) as error:
        print(f'basicsr {args.command}: error: {error}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
