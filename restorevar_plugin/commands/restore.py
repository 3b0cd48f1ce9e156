"""``basicsr restore``: restore a file or a folder of images with any registered method and its weights.

    basicsr restore -opt X.yml -i IN -o OUT [--resize] [--tile SIZE --overlap PX] [--batch-size N]
                    [--device cpu|cuda] [--root DIR] [--context-lq IMG --context-gt IMG] [--random-weights]
    basicsr restore --demo restorevar|restorevar_w_o_refiner|promptir -i IN -o OUT [...]

The option file is any BasicSR test option file: its ``model_type``, ``network_*`` blocks and ``path.pretrain_*``
weights build the model with BasicSR's ``build_model`` (relative paths resolve against ``--root``, default the
current directory); its ``datasets`` are ignored. ``--demo NAME`` instead takes a method of ``basicsr demo``
with the checkpoints shipped in the package, checked against their manifest
(:func:`restorevar_plugin.demo.summary.demo_method_options`). A network the option file gives no weights is an
error (restoring with random weights gives meaningless images) unless ``--random-weights`` asks for it. Nothing
but the outputs is written: no experiment or results folder, no log file.

How an image of any size is restored (the output always has the input's size):

* a model with a fixed input size (``RestoreVARModel``: ``R x R``, the VQVAE's resolution) restores the image
  in overlapping ``R x R`` tiles blended without seams (:mod:`restorevar_plugin.tiling`; ``--overlap`` defaults
  to ``R / 2``, the widest blending ramps a tile allows: neighbouring tiles that disagree fade into each other
  over half a tile), or, with ``--resize``, resized to ``R x R`` and back as in the paper's protocol;
* any other model (``RestorationModel`` for PromptIR or any arch, and its subclasses) restores the whole image,
  padded to ``val.size_multiple`` by the model's ``test``; ``--tile SIZE`` tiles it instead (less memory).

In-context models (AWRaCLe) take a degraded/clean context pair from ``--context-lq``/``--context-gt`` or the
option file's ``val.context: {lq: PATH, gt: PATH}``; it reaches the model's ``feed_data`` as ``context_lq`` and
``context_gt`` ``(B, 3, h, w)`` in [0, 1], next to ``lq``. A model class declaring ``requires_context = True``
refuses to run without one.

``IN`` is an image or a folder (searched recursively for .png .jpg .jpeg .bmp .tif .tiff .webp); ``OUT`` is the
output folder (the input's relative paths and file names are kept), or, for a single input image, a file name
with an image extension. Each output keeps its file's layout: bit depth (16-bit PNG/TIFF stay 16-bit), gray
stays gray (restored as RGB, converted back with BT.601 luma), an alpha channel is passed through unchanged
(a JPEG output cannot hold one: such an image is reported as failed before it is restored, not written without
it).
Same-size images are restored together, ``--batch-size`` at a time (tiles, when tiling); one progress bar counts
images, a second one the tiles of the images in work (when they need more than one forward pass). Every output is
written whole (temporary file, then rename). ``restore`` refuses to run when ``OUT`` is ``IN`` or when any
output would replace an input file. A file that cannot be read, restored or written is reported by name and
skipped; the others are restored. Exit code: 0 when every image was restored, 1 when some failed, 2 for a bad
option, argument or weight file.
"""
import contextlib
import logging
import os
import sys
from copy import deepcopy
from pathlib import Path

import torch
from basicsr.models import build_model
from PIL import Image
from tqdm import tqdm

from restorevar_plugin.atomic_files import write_bytes_whole
from restorevar_plugin.data.image_io import (
    ImageReader,
    ImageReadError,
    check_alpha_fits,
    encode_image_like,
)
from restorevar_plugin.harness import (
    OptionError,
    finalize_options,
    read_option_file,
)
from restorevar_plugin.tiling import tile_count, tiled_apply

NAME = 'restore'
HELP = 'restore an image or a folder of images with the model and weights of an option file'
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def add_arguments(parser):
    """Options of ``basicsr restore``."""
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument('-opt', help='option YAML (model_type, network_* blocks, path.pretrain_*)')
    model.add_argument('--demo', metavar='NAME', help='a method of basicsr demo with the checkpoints shipped in the '
                       'package: restorevar, restorevar_w_o_refiner (no refiner) or promptir')
    parser.add_argument('-i', '--input', required=True, help='an image, or a folder of images (recursive)')
    parser.add_argument('-o', '--output', required=True,
                        help='output folder (or an output file name when the input is one image)')
    parser.add_argument('--resize', action='store_true',
                        help='fixed-size models (RestoreVAR): resize to the model resolution and back instead of '
                        'tiling (the paper protocol)')
    parser.add_argument('--tile', type=int, default=None, metavar='SIZE',
                        help='tile side (default: the model resolution for fixed-size models, no tiling otherwise)')
    parser.add_argument('--overlap', type=int, default=None, metavar='PX',
                        help='minimum overlap of neighbouring tiles, blended (default: tile / 2)')
    parser.add_argument('--batch-size', type=int, default=1, metavar='N',
                        help='same-size images (or tiles) per forward pass (default 1)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default=None,
                        help='default: cuda when available, else cpu')
    parser.add_argument('--root', default=None, help='root for relative paths in the option file '
                        '(default: the current directory)')
    parser.add_argument('--context-lq', default=None, metavar='IMG', help='in-context models: degraded context image')
    parser.add_argument('--context-gt', default=None, metavar='IMG', help='in-context models: clean context image')
    parser.add_argument('--random-weights', action='store_true',
                        help='allow networks the option file gives no weights (path.pretrain_*): they keep their '
                        'seeded initial weights (smoke tests, timing); without it such a network is an error')


def select_device(choice):
    """``torch.device`` for ``--device`` (None: cuda when available); OptionError when CUDA is asked but absent."""
    if choice == 'cuda' and not torch.cuda.is_available():
        raise OptionError('--device cuda: no CUDA device is available')
    return torch.device(choice or ('cuda' if torch.cuda.is_available() else 'cpu'))


def read_model_options(option_file):
    """The options of ``-opt``, with ``name`` defaulting to the file's stem.

    Raises:
        FileNotFoundError: No option file. OptionError: Not valid YAML, not a mapping, or no ``model_type``.
    """
    if not os.path.isfile(option_file):
        raise FileNotFoundError(f'-opt: option file not found: {option_file}')
    opt = read_option_file(option_file)
    if not isinstance(opt, dict) or not opt.get('model_type'):
        raise OptionError(f'{option_file}: expected a BasicSR option file with a model_type')
    opt.setdefault('name', Path(option_file).stem)
    return opt


def model_options(args):
    """The model options of ``-opt`` or ``--demo`` (see the module docstring), not yet prepared for inference.

    Raises:
        FileNotFoundError: No option file, or a shipped demo checkpoint missing or changed (named).
        OptionError: A bad option file or demo name.
    """
    if args.demo is None:
        return read_model_options(os.path.abspath(args.opt))
    # Imported here so that restoring with an option file never depends on the benchmark package.
    from restorevar_plugin.demo.summary import demo_method_options

    return demo_method_options(args.demo)


def load_options(opt, root, device):
    """Prepare model options for inference: one process, no training, no datasets, paths resolved against ``root``.

    Returns:
        dict: A copy ready for ``build_model`` (``is_train`` False, ``num_gpu`` 0 or 1 for ``device``).

    Raises:
        UnknownRegistryNameError: A ``type`` no registry holds.
    """
    opt = deepcopy(opt)
    opt.pop('datasets', None)
    opt.update(is_train=False, dist=False, rank=0, world_size=1, num_gpu=1 if device.type == 'cuda' else 0)
    opt['path'] = dict(opt.get('path') or {}, resume_state=None)
    return finalize_options(opt, root)


def context_pair(args, opt, root, model):
    """The in-context pair from ``--context-lq/--context-gt`` or ``val.context``: ``{'context_lq', 'context_gt'}``
    ``(1, 3, h, w)`` tensors in [0, 1], or None when neither is given. A model with a ``read_context_pair(lq_path,
    gt_path)`` method (AWRaCLe: CLIP's geometry) reads the files itself, as for its own ``val.context``.

    Raises:
        OptionError: Only one of the pair given, or an image that cannot be read (named).
    """
    val_context = (opt.get('val') or {}).get('context') or {}
    paths = {'lq': args.context_lq or val_context.get('lq'), 'gt': args.context_gt or val_context.get('gt')}
    if not any(paths.values()):
        return None
    missing = [key for key, path in paths.items() if not path]
    if missing:
        raise OptionError(f'--context-{missing[0]} (or val.context.{missing[0]}): the context pair needs both a '
                          'degraded (lq) and a clean (gt) image')
    paths = {key: Path(path).expanduser() for key, path in paths.items()}
    paths = {key: path if path.is_absolute() else Path(root) / path for key, path in paths.items()}
    try:
        if hasattr(model, 'read_context_pair'):
            lq, gt = model.read_context_pair(paths['lq'], paths['gt'])
        else:
            reader = ImageReader()
            lq, gt = (torch.from_numpy(reader.read(str(paths[key]))).permute(2, 0, 1).unsqueeze(0)
                      for key in ('lq', 'gt'))
    except ImageReadError as error:
        raise OptionError(f'context pair: {error}') from error
    return {'context_lq': lq, 'context_gt': gt}


@contextlib.contextmanager
def basicsr_log_level(level):
    """Temporarily set the level of BasicSR's ``basicsr`` logger (quiet model building)."""
    logger = logging.getLogger('basicsr')
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def build_inference_model(opt):
    """BasicSR's ``build_model`` for options from :func:`load_options`, seeded by ``manual_seed`` (default 0) so
    that networks without weights are reproducible, with BasicSR's logger quiet (warnings only)."""
    torch.manual_seed(int(opt.get('manual_seed') or 0))
    with basicsr_log_level(logging.WARNING):
        return build_model(opt)


def networks_without_weights(opt, model):
    """The ``network_*`` blocks of ``opt`` that ``model`` built but whose ``path.pretrain_network_*`` is empty.

    Args:
        opt (dict): Options from :func:`load_options`.
        model: The model :func:`build_inference_model` built from them (its networks are ``net_<suffix>``).

    Returns:
        list[str]: Option keys such as ``['network_refiner']``, in option-file order.
    """
    return [key for key in opt if key.startswith('network_')
            and hasattr(model, 'net_' + key[len('network_'):]) and not opt['path'].get('pretrain_' + key)]


def require_weights(opt, model, allow_random):
    """OptionError naming every built network without weights, unless ``allow_random`` (``--random-weights``)."""
    missing = networks_without_weights(opt, model)
    if missing and not allow_random:
        keys = ', '.join(f'path.pretrain_{key}' for key in missing)
        raise OptionError(f'{keys} not set: restoring with random weights gives meaningless images; set the weight '
                          'file(s) in the option file, use --demo restorevar|promptir for the shipped demo '
                          'checkpoints, or pass --random-weights to run with initial weights on purpose')


class ModelRestorer:
    """Restores batches of same-size images with a BasicSR model; see the module docstring for the modes.

    Args:
        model: A BasicSR model (``feed_data`` / ``test`` / ``get_current_visuals`` with ``result`` in [0, 1]).
        tile (int | None): Tile side; None restores whole images.
        overlap (int): Tile overlap (ignored without ``tile``).
        batch_size (int): Tiles per forward pass when tiling.
        context (dict | None): ``context_lq`` / ``context_gt`` ``(1, 3, h, w)`` passed with every batch.
    """

    def __init__(self, model, tile=None, overlap=0, batch_size=1, context=None):
        self.model, self.tile, self.overlap, self.batch_size = model, tile, overlap, batch_size
        self.context = context or {}

    def _run(self, lq):
        data = {'lq': lq}
        data.update({key: value.expand(lq.shape[0], -1, -1, -1) for key, value in self.context.items()})
        self.model.feed_data(data)
        self.model.test()
        return self.model.get_current_visuals()['result'].float().clamp(0, 1)

    def __call__(self, images):
        """``(B, 3, H, W)`` in [0, 1] -> restored ``(B, 3, H, W)`` in [0, 1] on the CPU."""
        if self.tile is None:
            restored = self._run(images)
        else:
            total = images.shape[0] * tile_count(*images.shape[-2:], self.tile, self.overlap)
            with tqdm(total=total, unit='tile', desc='tiles', leave=False, disable=total <= self.batch_size) as bar:
                def run_and_count(crops):
                    outputs = self._run(crops)
                    bar.update(crops.shape[0])
                    return outputs

                restored = tiled_apply(run_and_count, images, self.tile, self.overlap, self.batch_size)
        if restored.shape != images.shape:
            raise ValueError(f'the model returned {tuple(restored.shape)} for input {tuple(images.shape)}')
        return restored.cpu()


def make_restorer(model, args, context):
    """A :class:`ModelRestorer` for the command-line choices, and a line describing the mode.

    Raises:
        OptionError: ``--resize`` with ``--tile`` or with a model of no fixed input size; a bad tile, overlap or
            batch size; an in-context model without a context pair.
    """
    fixed = getattr(model, 'fixed_input_size', None)
    name = type(model).__name__
    if args.batch_size <= 0:
        raise OptionError(f'--batch-size must be positive; got {args.batch_size}')
    if getattr(model, 'requires_context', False) and context is None:
        raise OptionError(f'{name} restores with an in-context pair: give --context-lq and --context-gt '
                          '(or val.context in the option file)')
    if args.resize:
        if args.tile is not None:
            raise OptionError('--resize and --tile exclude each other')
        if fixed is None:
            raise OptionError(f'--resize: {name} has no fixed input size; it restores images at their own size')
        return ModelRestorer(model, context=context), f'{name}: resized to {fixed}x{fixed} and back'
    tile = args.tile if args.tile is not None else fixed
    if tile is None:
        if args.overlap is not None:
            raise OptionError('--overlap needs --tile (this model restores whole images)')
        multiple = (model.opt.get('val') or {}).get('size_multiple', 1)
        return (ModelRestorer(model, context=context),
                f'{name}: whole images' + (f', padded to a multiple of {multiple}' if multiple > 1 else ''))
    overlap = args.overlap if args.overlap is not None else tile // 2
    if tile <= 0 or not 0 <= overlap < tile:
        raise OptionError(f'--tile must be positive and 0 <= --overlap < --tile; got tile {tile}, overlap {overlap}')
    note = '' if fixed in (None, tile) else f' (each resized to {fixed}x{fixed} by the model)'
    return (ModelRestorer(model, tile, overlap, args.batch_size, context),
            f'{name}: {tile}x{tile} tiles{note}, overlap {overlap} px, raised-cosine blending')


def list_inputs(source, output):
    """The images to restore: ``[(input file, output file)]``, sorted by input path.

    Raises:
        OptionError: No input, no image in a folder, ``output`` equal to ``source``, or an output path that is an
            input file (same path or same file through a link).
    """
    source, output = Path(source).expanduser().resolve(), Path(output).expanduser().resolve()
    if not source.exists():
        raise OptionError(f'-i: {source} does not exist')
    if source == output:
        raise OptionError(f'-o is the input {source}: restore never writes over its inputs; choose another output')
    if source.is_file():
        target = output if output.suffix.lower() in IMAGE_SUFFIXES else output / source.name
        pairs = [(source, target)]
    else:
        if output.is_file():
            raise OptionError(f'-o: {output} is a file; the input {source} is a folder, so the output must be one')
        files = sorted(path for path in source.rglob('*') if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
                       and output not in path.parents and not path.name.startswith('.'))
        if not files:
            raise OptionError(f'-i: no images ({" ".join(IMAGE_SUFFIXES)}) in {source}')
        pairs = [(path, output / path.relative_to(source)) for path in files]
    inputs = {path for path, _ in pairs}
    identities = {(stat.st_dev, stat.st_ino) for stat in (os.stat(path) for path in inputs)}
    for _, target in pairs:
        if target in inputs or (target.exists() and (os.stat(target).st_dev, os.stat(target).st_ino) in identities):
            raise OptionError(f'-o: the output {target} would replace an input file; choose another output')
    return pairs


def header_size(path):
    """``(height, width)`` from the image header (PIL, no decoding), or None when PIL cannot tell."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except Exception:  # any unreadable header: the full decode reports the error by name
        return None


def size_groups(pairs, batch_size):
    """Split ``pairs`` into groups of at most ``batch_size`` images of one header size, in input order."""
    by_size = {}
    for index, pair in enumerate(pairs):
        size = header_size(pair[0])
        by_size.setdefault(size if size is not None else ('unknown', index), []).append(pair)
    groups = []
    for members in by_size.values():
        groups.extend(members[start:start + batch_size] for start in range(0, len(members), batch_size))
    return groups


def restore_group(restorer, reader, group, report_failure):
    """Read, restore and write one group of same-size images; return the number written.

    Every file that cannot be read, restored or written is passed to ``report_failure(path, reason)``.
    """
    loaded = []
    for source, target in group:
        try:
            layers = reader.read_layers(str(source))
        except ImageReadError as error:
            report_failure(source, str(error).removeprefix(f'{source}: '))
            continue
        try:
            check_alpha_fits(layers.alpha, target.suffix)
        except ValueError as error:  # refused before restoring: the restoration would be thrown away
            report_failure(source, f'cannot write {target}: {error}')
            continue
        loaded.append((source, target, layers))
    by_shape = {}
    for item in loaded:
        by_shape.setdefault(item[2].rgb.shape, []).append(item)
    written = 0
    for members in by_shape.values():
        batch = torch.stack([torch.from_numpy(layers.rgb).permute(2, 0, 1) for _, _, layers in members])
        try:
            restored = restorer(batch)
        except (RuntimeError, ValueError) as error:
            for source, _, _ in members:
                report_failure(source, f'restoration failed: {error}')
            continue
        for (source, target, layers), image in zip(members, restored):
            try:
                data = encode_image_like(image.permute(1, 2, 0).numpy(), layers.info, layers.alpha, target.suffix)
                write_bytes_whole(target, data)
                written += 1
            except (OSError, ValueError) as error:
                report_failure(source, f'cannot write {target}: {error}')
    return written


def run(args):
    """Restore ``-i`` into ``-o``; exit code 0, 1 when some images failed, 2 for a bad option or file."""
    root = Path(args.root or os.getcwd()).resolve()
    try:
        pairs = list_inputs(args.input, args.output)
        device = select_device(args.device)
        opt = load_options(model_options(args), root, device)
        model = build_inference_model(opt)
        require_weights(opt, model, args.random_weights)
        context = context_pair(args, opt, root, model)
        restorer, mode = make_restorer(model, args, context)
    except (OptionError, ValueError, ImageReadError) as error:  # ImageReadError: the model's own val.context
        print(f'basicsr {NAME}: error: {error}', file=sys.stderr)
        return 2
    reader = ImageReader()
    weights = [f'{key}: {value}' for key, value in opt['path'].items() if key.startswith('pretrain_') and value]
    print(f'{mode}; weights: {", ".join(weights) if weights else "none (random initialisation)"}', flush=True)
    failures = []

    def report_failure(path, reason):
        failures.append((path, reason))
        tqdm.write(f'failed: {path}: {reason}', file=sys.stderr)

    written = 0
    with tqdm(total=len(pairs), unit='image', desc='restore') as progress:
        for group in size_groups(pairs, args.batch_size):
            written += restore_group(restorer, reader, group, report_failure)
            progress.update(len(group))
    print(f'restored {written} of {len(pairs)} image(s) into {args.output}', flush=True)
    if failures:
        print(f'{len(failures)} image(s) failed:\n' + '\n'.join(f'  {path}: {reason}' for path, reason in failures),
              file=sys.stderr)
        return 1
    return 0
