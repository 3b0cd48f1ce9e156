"""``basicsr train -opt X.yml``: BasicSR's ``train_pipeline`` with the plugin's fixes."""
from restorevar_plugin.commands.pipeline_args import add_pipeline_arguments
from restorevar_plugin.harness import run_pipeline

NAME = 'train'
HELP = 'train a model from a BasicSR option file'


def add_arguments(parser):
    """Options of ``basicsr train``."""
    add_pipeline_arguments(parser, with_resume=True)


def run(args):
    """Run the training pipeline; exit code 0 on success."""
    run_pipeline('train', args)
    return 0
