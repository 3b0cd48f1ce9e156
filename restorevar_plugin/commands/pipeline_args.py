"""Arguments shared by ``basicsr train`` and ``basicsr test`` (BasicSR's own flags plus ``--root``)."""


def add_pipeline_arguments(parser, with_resume):
    """Add ``-opt``, ``--launcher``, ``--debug``, ``--force_yml``, ``--local_rank``/``--local-rank``, ``--root``.

    Args:
        parser (argparse.ArgumentParser): The sub-command's parser.
        with_resume (bool): Also add ``--auto_resume`` (training only).
    """
    parser.add_argument('-opt', required=True, help='option YAML file (BasicSR schema)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='none: one process; pytorch: under torchrun; slurm: under srun')
    if with_resume:
        parser.add_argument('--auto_resume', action='store_true',
                            help='resume from the latest <root>/experiments/<name>/training_states/*.state')
    parser.add_argument('--debug', action='store_true', help="BasicSR's debug mode (prefix debug_, log often)")
    parser.add_argument('--force_yml', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override existing option keys, e.g. train:total_iter=10')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help='set by torch.distributed.launch; torchrun uses the LOCAL_RANK variable instead')
    parser.add_argument('--root', default=None,
                        help='root for experiments/, results/ and relative paths in the option file '
                        '(default: the current directory)')
