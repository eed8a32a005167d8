"""Importing this module applies the stack fixes: the opt-in.

``import mmefficientmod`` only registers; the fixes of
:mod:`mmefficientmod.stack_fixes` change mmengine for the whole process, so
they are applied where they are asked for. This project's configs ask with::

    custom_imports = dict(
        imports=['mmefficientmod', 'mmefficientmod.apply_stack_fixes'],
        allow_failed_imports=False)

so the libraries' own tools (``tools/train.py`` of mmdet, mmseg and
mmpretrain, ``mim train``) apply them when they load the config, before the
runner starts the process group, builds the datasets or resumes. This
project's tools import the module themselves. Each fix applies only where the
installed versions have its gap; importing the module again changes nothing.
"""
from .stack_fixes import apply_all

#: The names of the fixes applied (those the installed stack needs).
APPLIED = apply_all()
