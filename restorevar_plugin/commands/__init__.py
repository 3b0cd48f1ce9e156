"""Subcommands of the ``basicsr`` console script, one module each.

Every module listed in :data:`COMMAND_MODULES` defines ``NAME`` (the subcommand), ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code). ``cli.py`` builds the
parser from this list, so a new subcommand is one new module plus one line here.
"""
COMMAND_MODULES = [
    'restorevar_plugin.commands.train',
    'restorevar_plugin.commands.test',
    'restorevar_plugin.commands.list_registered',
    'restorevar_plugin.commands.check_data',
    'restorevar_plugin.commands.analyze_scales',
    'restorevar_plugin.commands.restore',
    'restorevar_plugin.commands.benchmark',
    'restorevar_plugin.commands.demo',
]
