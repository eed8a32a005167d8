"""Walking the nested dicts and lists of an OpenMMLab config: the one
walker of the package, the tools and the tests."""
from typing import Any, Container, Iterator, Tuple

Walk = Iterator[Tuple[str, dict]]


def walk_config(node: Any, path: str = '', skip: Container[str] = ()) -> Walk:
    """Yield ``(path, dict)`` for every dict in ``node``, depth first,
    ``node`` itself included when it is a dict.

    Args:
        node: A config, or any part of one (dicts, lists, tuples, values).
        path (str): The name of ``node``; the yielded paths extend it
            (``model.roi_head.bbox_head[0]``).
        skip: Keys whose values are not entered (e.g. ``'teacher'``).
    """
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key not in skip:
                yield from walk_config(value, f'{path}.{key}', skip)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from walk_config(value, f'{path}[{i}]', skip)
