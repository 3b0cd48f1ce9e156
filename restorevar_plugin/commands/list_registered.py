"""``basicsr list``: what is registered in BasicSR's registries, ours marked."""
from restorevar_plugin.registry_utils import REGISTRIES, owner_module, registered_names

NAME = 'list'
HELP = 'list registered archs, models, datasets, losses and metrics (ours marked with *)'


def add_arguments(parser):
    """Options of ``basicsr list``."""
    parser.add_argument('kinds', nargs='*', metavar='KIND',
                        help=f'registries to show, among {", ".join(sorted(REGISTRIES))} (default: all)')
    parser.add_argument('--ours', action='store_true', help='show only restorevar_plugin registrations')


def format_listing(kinds, ours_only=False):
    """The text printed by ``basicsr list``: one block per registry, ``*`` before plugin names."""
    lines = []
    for kind in kinds or sorted(REGISTRIES):
        entries = []
        for name in registered_names(kind):
            module = owner_module(kind, name)
            ours = module.startswith('restorevar_plugin.')
            if ours_only and not ours:
                continue
            entries.append(f'  {"*" if ours else " "} {name:<40} {module}')
        lines.append(f'{kind} ({len(entries)}):')
        lines.extend(entries)
    lines.append('* = registered by restorevar_plugin')
    return '\n'.join(lines)


def run(args):
    """Print the listing; exit code 0, or 2 for an unknown registry kind."""
    unknown = sorted(set(args.kinds) - set(REGISTRIES))
    if unknown:
        print(f'basicsr list: unknown kind(s) {", ".join(unknown)}; choose among {", ".join(sorted(REGISTRIES))}')
        return 2
    print(format_listing(args.kinds, args.ours))
    return 0
