"""Shared pieces of ``tools/train.py`` and ``tools/test.py``."""
import os
import os.path as osp
import re
from typing import Optional

from mmengine.config import Config, ConfigDict, DictAction

from mmefficientmod.config_tree import walk_config


def library_of(cfg: Config) -> Optional[str]:
    """'mmdet', 'mmseg', 'mmpretrain' or None, from the default scope."""
    scope = cfg.get('default_scope', None)
    return scope if scope in ('mmdet', 'mmseg', 'mmpretrain') else None


class ConfigOptionsAction(DictAction):
    """mmengine's ``--cfg-options`` parser, plus ``KEY=dict(a=1,b=x)``
    values, which replace the entry ``KEY`` with that dict: mmengine 0.10's
    parser recurses without end on ``dict(...)``."""

    @classmethod
    def _parse_value(cls, value: str):
        text = value.strip().strip('\'"')
        if not re.fullmatch(r'dict\(.*\)', text, re.S):
            return DictAction._parse_iterable(value)
        parsed, depth, item = ConfigDict(), 0, ''
        for char in text[5:-1] + ',':  # split at the top-level commas
            depth += (char in '([{') - (char in ')]}')
            if char != ',' or depth:
                item += char
                continue
            if item.strip():
                key, sep, value = item.partition('=')
                if not sep or not key.strip().isidentifier():
                    raise ValueError(
                        f'--cfg-options: cannot read {item!r} inside '
                        'dict(...); write dict(key=value, ...).')
                parsed[key.strip()] = cls._parse_value(value)
            item = ''
        return parsed

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        for item in values:
            key, sep, value = item.partition('=')
            if not sep:
                parser.error(f'--cfg-options takes KEY=VALUE, got {item!r}.')
            try:
                options[key] = self._parse_value(value)
            except ValueError as error:
                parser.error(str(error))
        setattr(namespace, self.dest, options)


def add_runner_arguments(parser, cfg_options_example: str) -> None:
    """``config``, ``--work-dir``, ``--cfg-options``, ``--launcher`` and the
    launcher's ``--local-rank``."""
    add = parser.add_argument
    add('config', help='config file')
    add('--work-dir', help='folder for the run (default: work_dirs/CONFIG)')
    add('--cfg-options',
        nargs='+',
        action=ConfigOptionsAction,
        help=f'override config entries, e.g. {cfg_options_example}')
    add('--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (or --local_rank).
    add('--local_rank', '--local-rank', type=int, default=0)


def load_config(args) -> Config:
    """The config with ``--cfg-options``, the launcher and the work dir
    (``--work-dir``, else the config's, else work_dirs/<config name>)."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        # A dict value replaces the entry (``_delete_``), as assigning it
        # means; the other values merge as in mmengine.
        cfg.merge_from_dict({
            key:
            ConfigDict(_delete_=True, **value) if
            isinstance(value, ConfigDict) and _has_entry(cfg, key) else value
            for key, value in args.cfg_options.items()
        })
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def _has_entry(cfg: Config, dotted_key: str) -> bool:
    node = cfg
    for part in dotted_key.split('.'):
        if not isinstance(node, (dict, Config)) or part not in node:
            return False
        node = node[part]
    return True


def build_runner(cfg: Config):
    """The config's runner, built once the stack fixes are applied (also for
    configs that do not import them) and the config is checked (widths,
    class counts); the check hook is added where the config does not list
    it, so that the dataset's classes are checked too."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import mmefficientmod.apply_stack_fixes  # noqa: F401
    from mmefficientmod.engine import EfficientModConfigCheckHook, check_config
    check_config(cfg)
    runner = (
        RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg))
    if not any(
            isinstance(hook, EfficientModConfigCheckHook)
            for hook in runner.hooks):
        runner.register_hook(EfficientModConfigCheckHook())
    return runner


def check_annotation_files(cfg: Config, splits=('train', 'val', 'test')):
    """Fail early, naming the file, when a dataset's annotation file is
    missing or empty (the libraries otherwise report a bare JSON error)."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader', None)
        if not isinstance(loader, dict):
            continue
        # The dataset and those inside wrappers; pipeline steps name no
        # ann_file.
        for _, ds in walk_config(loader.get('dataset')):
            ann_file = ds.get('ann_file')
            if not isinstance(ann_file, str) or not ann_file:
                continue
            data_root = ds.get('data_root') or ''
            path = osp.join(data_root, ann_file)  # ann_file if absolute
            if '://' in path:  # remote: read by the file backend
                continue
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'The {split} annotation file {path} does not exist '
                    f'(data_root={data_root!r}, ann_file={ann_file!r}). '
                    f'Generate or download the data, or set '
                    f'{split}_dataloader.dataset.data_root.')
            if osp.getsize(path) == 0:
                raise ValueError(
                    f'The {split} annotation file {path} is empty (0 bytes); '
                    f'it was probably cut short while being written or '
                    f'copied. Restore or regenerate it.')
