"""mmefficientmod.config_tree.walk_config: every dict of a config, with its
path, depth first, without entering skipped keys."""
from mmefficientmod.config_tree import walk_config


def test_walk_yields_every_dict_with_its_path():
    cfg = dict(
        type='MaskRCNN',
        roi_head=dict(bbox_head=[dict(
            num_classes=3), dict(num_classes=4)]),
        rpn_head=dict(num_classes=1),
        teacher=dict(head=dict(num_classes=1000)),
        pipeline=(dict(type='Resize', scale=(8, 8)), 'not a dict'))
    paths = [path for path, _ in walk_config(cfg, 'model')]
    assert paths == [
        'model', 'model.roi_head', 'model.roi_head.bbox_head[0]',
        'model.roi_head.bbox_head[1]', 'model.rpn_head', 'model.teacher',
        'model.teacher.head', 'model.pipeline[0]'
    ]
    counts = [(path, part['num_classes']) for path, part in walk_config(
        cfg, 'model', skip=('rpn_head', 'teacher')) if 'num_classes' in part]
    assert counts == [('model.roi_head.bbox_head[0]', 3),
                      ('model.roi_head.bbox_head[1]', 4)]


def test_walk_hands_out_the_dicts_themselves():
    cfg = dict(a=[dict(type='RoIAlign')])
    for _, part in walk_config(cfg):
        if part.get('type') == 'RoIAlign':
            part['use_torchvision'] = True
    assert cfg['a'][0]['use_torchvision'] is True
    assert list(walk_config([1, 'x', None])) == []
