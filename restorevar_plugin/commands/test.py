"""``basicsr test -opt X.yml``: BasicSR's ``test_pipeline`` with the plugin's fixes."""
from restorevar_plugin.commands.pipeline_args import add_pipeline_arguments
from restorevar_plugin.harness import run_pipeline

NAME = 'test'
HELP = 'test a model on the datasets of a BasicSR option file (metrics and images under results/)'


def add_arguments(parser):
    """Options of ``basicsr test``."""
    add_pipeline_arguments(parser, with_resume=False)


def run(args):
    """Run the test pipeline; exit code 0 on success."""
    run_pipeline('test', args)
    return 0
