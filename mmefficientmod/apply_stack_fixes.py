"""Importing this module applies the stack fixes (the opt-in).

The fixes of :mod:`mmefficientmod.stack_fixes` change other libraries for
the whole process, so they apply only where asked for: this project's
configs list this module in ``custom_imports`` (so the libraries' own tools
and ``mim`` apply them when they load the config, before any process group,
dataset or resume) and its tools import it. Each fix applies only where the
installed versions have its gap; importing again changes nothing.
"""
from .stack_fixes import apply_all

#: The names of the fixes applied (those the installed stack needs).
APPLIED = apply_all()
