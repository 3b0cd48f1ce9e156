"""``basicsr list``: what is registered in BasicSR's registries, ours marked, and the evaluation protocols."""
import yaml

from restorevar_plugin.metrics.protocols import PROTOCOLS
from restorevar_plugin.registry_utils import REGISTRIES, owner_module, registered_names

NAME = 'list'
HELP = 'list registered archs, models, datasets, losses and metrics (ours marked with *), or evaluation protocols'
PROTOCOL_KIND = 'protocol'


def add_arguments(parser):
    """Options of ``basicsr list``."""
    parser.add_argument('kinds', nargs='*', metavar='KIND',
                        help=f'registries to show, among {", ".join(sorted(REGISTRIES))} (default: all), or '
                        f'{PROTOCOL_KIND} for the evaluation protocols and their val.metrics blocks')
    parser.add_argument('--ours', action='store_true', help='show only restorevar_plugin registrations')


def format_protocols():
    """Each evaluation protocol of :data:`~restorevar_plugin.metrics.protocols.PROTOCOLS`: its description and the
    ``val.metrics`` block that measures it (to paste into an option file)."""
    lines = [f'{PROTOCOL_KIND} ({len(PROTOCOLS)}):']
    for name, protocol in PROTOCOLS.items():
        metrics = yaml.safe_dump({'metrics': protocol.metric_options()}, default_flow_style=False, sort_keys=False)
        lines += [f'  {name}', f'    {protocol.describe()}', '    val:']
        lines += [f'      {line}' for line in metrics.splitlines()]
    return '\n'.join(lines)


def format_listing(kinds, ours_only=False):
    """The text printed by ``basicsr list``: one block per registry, ``*`` before plugin names."""
    lines = []
    for kind in kinds or sorted(REGISTRIES):
        if kind == PROTOCOL_KIND:
            lines.append(format_protocols())
            continue
        entries = []
        for name in registered_names(kind):
            module = owner_module(kind, name)
            ours = module.startswith('restorevar_plugin.')
            if ours_only and not ours:
                continue
            entries.append(f'  {"*" if ours else " "} {name:<40} {module}')
        lines.append(f'{kind} ({len(entries)}):')
        lines.extend(entries)
    if set(kinds or REGISTRIES) - {PROTOCOL_KIND}:
        lines.append('* = registered by restorevar_plugin')
    return '\n'.join(lines)


def run(args):
    """Print the listing; exit code 0, or 2 for an unknown registry kind."""
    unknown = sorted(set(args.kinds) - set(REGISTRIES) - {PROTOCOL_KIND})
    if unknown:
        print(f'basicsr list: unknown kind(s) {", ".join(unknown)}; choose among '
              f'{", ".join(sorted(REGISTRIES))} or {PROTOCOL_KIND}')
        return 2
    print(format_listing(args.kinds, args.ours))
    return 0
