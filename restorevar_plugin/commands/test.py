"""``basicsr test -opt X.yml``: BasicSR's ``test_pipeline`` with the plugin's fixes."""
from restorevar_plugin.commands.pipeline_args import add_pipeline_arguments
from restorevar_plugin.harness import run_pipeline
from restorevar_plugin.models.inference_options import PRECISIONS

NAME = 'test'
HELP = 'test a model on the datasets of a BasicSR option file (metrics and images under results/)'


def add_arguments(parser):
    """Options of ``basicsr test``: the pipeline's, plus ``--precision``."""
    add_pipeline_arguments(parser, with_resume=False)
    parser.add_argument('--precision', choices=list(PRECISIONS), default=None,
                        help='inference precision, sets val.precision (fp16: GPU only, fp32 on a CPU)')


def run(args):
    """Run the test pipeline (``--precision X`` becomes ``--force_yml val:precision=X``); exit code 0."""
    if args.precision:
        args.force_yml = [*(args.force_yml or []), f'val:precision={args.precision}']
    run_pipeline('test', args)
    return 0
