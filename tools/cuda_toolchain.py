"""The CUDA toolchain that builds mmcv's CUDA ops; called by tools/install.sh.

Usage::

    python tools/cuda_toolchain.py setup       # prints `export` lines
    python tools/cuda_toolchain.py check-ops   # RoIAlign and nms on the GPU

``setup`` finds an nvcc whose CUDA major version matches the one torch was
built with (``$CUDA_HOME``, the registry's toolkit inside this environment,
``nvcc`` on ``PATH``, ``/usr/local/cuda``, in that order) and, when none
matches, installs the registry's nvcc of torch's CUDA version into this
environment with pip (so it works from a wheelhouse too: pip reads
``PIP_NO_INDEX`` and ``PIP_FIND_LINKS``). It then prints ``CUDA_HOME`` and
``TORCH_CUDA_ARCH_LIST`` (the visible GPUs' compute capabilities unless the
variable is already set) for the shell to ``eval``. Messages go to stderr.

Only the standard library is imported at module level, so the tests can
drive every decision with fake ``nvcc`` scripts and fake device lists.
"""
import argparse
import glob
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
import sysconfig
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# The registry's toolkit wheels put CUDA >= 13 in one folder, nvidia/cu<N>,
# laid out like a system toolkit (bin/nvcc, include, lib): CUDA_HOME can
# point there. The cccl extra brings the CUB/Thrust headers mmcv includes.
REGISTRY_EXTRAS = 'nvcc,cccl'
REGISTRY_MIN_MAJOR = 13
# Where system-wide toolkits live when nvcc is not on PATH.
SYSTEM_HOMES = ('/usr/local/cuda', )


class ToolchainError(RuntimeError):
    """A step of the CUDA toolchain failed; the message names the fix."""


def log(message: str) -> None:
    print(f'[cuda_toolchain] {message}', file=sys.stderr, flush=True)


def nvcc_release(nvcc: str) -> Optional[str]:
    """The ``release X.Y`` that ``nvcc --version`` prints, or None when the
    file does not run."""
    try:
        out = subprocess.run([nvcc, '--version'],
                             capture_output=True,
                             text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'release (\d+)\.(\d+)', out)
    return f'{match.group(1)}.{match.group(2)}' if match else None


def _major(version: str) -> str:
    return version.split('.')[0]


def is_toolkit(home: str) -> bool:
    """Whether ``home`` can serve as CUDA_HOME: nvcc and the runtime
    headers (an nvcc on PATH may be a wrapper script outside its toolkit).
    """
    return (osp.isfile(osp.join(home, 'bin', 'nvcc'))
            and osp.isfile(osp.join(home, 'include', 'cuda_runtime.h')))


def registry_homes(site_dirs: Sequence[str]) -> List[str]:
    """``nvidia/cu<N>`` folders with an nvcc inside the given site-packages
    folders (where the registry's toolkit wheels install)."""
    found = []
    for site in site_dirs:
        for home in sorted(glob.glob(osp.join(site, 'nvidia', 'cu[0-9]*'))):
            if is_toolkit(home):
                found.append(home)
    return found


def _which(name: str, path: str) -> Optional[str]:
    for folder in path.split(os.pathsep):
        candidate = osp.join(folder, name)
        if folder and osp.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def candidate_homes(
        env: Dict[str, str],
        site_dirs: Sequence[str],
        system_homes: Sequence[str] = SYSTEM_HOMES) -> List[Tuple[str, str]]:
    """``(where it was found, CUDA home)`` pairs in the order they are
    tried, without duplicates; ``$CUDA_HOME``/``$CUDA_PATH`` are left to
    the caller because a user's explicit choice is never skipped."""
    found = [('this environment', home) for home in registry_homes(site_dirs)]
    on_path = _which('nvcc', env.get('PATH', ''))
    if on_path:
        found.append(('PATH', osp.dirname(osp.dirname(osp.realpath(on_path)))))
    found += [(home, home) for home in system_homes]
    unique, seen = [], set()
    for origin, home in found:
        key = osp.realpath(home)
        if key not in seen and is_toolkit(home):
            seen.add(key)
            unique.append((origin, home))
    return unique


def registry_requirement(torch_cuda: str,
                         toolkit_version: Optional[str]) -> str:
    """The pip requirement for the registry's nvcc matching torch's CUDA.

    Args:
        torch_cuda: ``torch.version.cuda``, e.g. ``'13.0'``.
        toolkit_version: the installed ``cuda-toolkit`` distribution's
            version (torch's own CUDA libraries come through it), or None.
    """
    if int(_major(torch_cuda)) < REGISTRY_MIN_MAJOR:
        raise ToolchainError(
            f'torch was built with CUDA {torch_cuda}; the registry packages '
            f'CUDA {torch_cuda} in several folders that cannot serve as one '
            f'CUDA_HOME. Install the CUDA {torch_cuda} toolkit from NVIDIA '
            f'(or load it as a module on a cluster) and set CUDA_HOME to it.')
    if toolkit_version and toolkit_version.startswith(torch_cuda + '.'):
        # The same release as torch's libraries: its headers match them.
        return f'cuda-toolkit[{REGISTRY_EXTRAS}]=={toolkit_version}'
    return f'cuda-toolkit[{REGISTRY_EXTRAS}]=={torch_cuda}.*'


def find_cuda_home(
        torch_cuda: str,
        env: Dict[str, str],
        site_dirs: Sequence[str],
        system_homes: Sequence[str] = SYSTEM_HOMES) -> Optional[str]:
    """A CUDA home whose nvcc has torch's CUDA major version, or None.

    An exact ``major.minor`` match wins over a major-only one (torch's
    extension builder accepts both and warns about the latter).

    Raises:
        ToolchainError: ``$CUDA_HOME`` (or ``$CUDA_PATH``) is set but has no
            nvcc of torch's major version: the user chose it, so it is not
            silently replaced.
    """
    explicit = env.get('CUDA_HOME') or env.get('CUDA_PATH')
    if explicit:
        release = nvcc_release(osp.join(explicit, 'bin', 'nvcc'))
        if release is None or not is_toolkit(explicit):
            raise ToolchainError(
                f'CUDA_HOME={explicit} has no working bin/nvcc or no '
                f'include/cuda_runtime.h. Point '
                f'CUDA_HOME at a CUDA {torch_cuda} toolkit, or unset it so '
                f'that the installer finds or installs a matching nvcc.')
        if _major(release) != _major(torch_cuda):
            raise ToolchainError(
                f'CUDA_HOME={explicit} has nvcc {release}, but torch was '
                f'built with CUDA {torch_cuda}; torch refuses to build '
                f'extensions across CUDA major versions. Point CUDA_HOME at '
                f'a CUDA {_major(torch_cuda)}.x toolkit, or unset it so that '
                f'the installer installs the registry\'s nvcc '
                f'(cuda-toolkit[{REGISTRY_EXTRAS}]=={torch_cuda}.*).')
        log(f'using CUDA_HOME={explicit} (nvcc {release})')
        return explicit
    same_major = None
    for origin, home in candidate_homes(env, site_dirs, system_homes):
        release = nvcc_release(osp.join(home, 'bin', 'nvcc'))
        if release == torch_cuda:
            log(f'nvcc {release} found in {home} ({origin})')
            return home
        if release and _major(release) == _major(torch_cuda):
            same_major = same_major or home
        else:
            log(f'skipping nvcc {release} in {home} ({origin}): torch was '
                f'built with CUDA {torch_cuda}')
    if same_major:
        log(f'using {same_major}: same CUDA major version as torch '
            f'({torch_cuda}), another minor version')
    return same_major


def ensure_cudart_link(home: str) -> None:
    """Give the registry's toolkit the unversioned ``libcudart.so``.

    The wheels ship only ``libcudart.so.<N>``; the extension build links
    with ``-lcudart``, which only finds the unversioned name.
    """
    lib = osp.join(home, 'lib')
    if osp.exists(osp.join(lib, 'libcudart.so')):
        return
    versioned = sorted(glob.glob(osp.join(lib, 'libcudart.so.[0-9]*')))
    if versioned:
        os.symlink(osp.basename(versioned[0]), osp.join(lib, 'libcudart.so'))


def arch_list(env: Dict[str, str], capabilities: Sequence[Tuple[int, int]],
              torch_arches: Sequence[str]) -> str:
    """``TORCH_CUDA_ARCH_LIST`` for the build.

    Args:
        env: the environment; a non-empty ``TORCH_CUDA_ARCH_LIST`` in it is
            the user's choice and returned as it is.
        capabilities: the visible GPUs' compute capabilities.
        torch_arches: ``torch.cuda.get_arch_list()``, e.g. ``['sm_90']``;
            a GPU newer than torch's newest architecture is built for that
            one, as torch's own extension builder does.
    """
    chosen = env.get('TORCH_CUDA_ARCH_LIST', '').strip()
    if chosen:
        return chosen
    if not capabilities:
        raise ToolchainError(
            'no GPU is visible, so the architectures to build mmcv\'s CUDA '
            'ops for are unknown. Set TORCH_CUDA_ARCH_LIST, e.g. '
            'TORCH_CUDA_ARCH_LIST="8.0;9.0" for A100 and H100/H200, or run '
            'the installer on a machine with the GPUs.')
    sms = [(int(m.group(1)[:-1]), int(m.group(1)[-1]))
           for m in (re.match(r'sm_(\d+)', a) for a in torch_arches) if m]
    newest = max(sms) if sms else None
    arches = set()
    for cap in capabilities:
        major, minor = min(tuple(cap), newest) if newest else tuple(cap)
        arches.add((major, minor))
    return ';'.join(f'{major}.{minor}' for major, minor in sorted(arches))


def site_packages() -> List[str]:
    """This interpreter's site-packages folders (purelib and platlib)."""
    paths = sysconfig.get_paths()
    return sorted({paths['purelib'], paths['platlib']})


def pip_install(requirement: str) -> None:
    """Install ``requirement`` into this interpreter's environment."""
    cmd = [
        sys.executable, '-m', 'pip', 'install', '--disable-pip-version-check',
        requirement
    ]
    log(' '.join(shlex.quote(c) for c in cmd))
    if subprocess.run(cmd).returncode != 0:
        offline = os.environ.get('PIP_NO_INDEX', '') not in ('', '0')
        hint = ('add it to the wheelhouse (tools/install.sh '
                '--fill-wheelhouse) or set CUDA_HOME to a CUDA toolkit of '
                'the same major version' if offline else
                'check access to the package index, or set CUDA_HOME to a '
                'CUDA toolkit of the same major version')
        raise ToolchainError(f'could not install {requirement}: {hint}.')


def setup(torch_cuda: Optional[str],
          capabilities: Sequence[Tuple[int, int]],
          torch_arches: Sequence[str],
          env: Dict[str, str],
          site_dirs: Sequence[str],
          toolkit_version: Optional[str],
          install: Callable[[str], None] = pip_install,
          system_homes: Sequence[str] = SYSTEM_HOMES) -> Dict[str, str]:
    """The variables the mmcv build needs: ``CUDA_HOME`` and
    ``TORCH_CUDA_ARCH_LIST``; installs the registry's nvcc when no
    matching one is found.

    Args:
        torch_cuda: ``torch.version.cuda`` (None for a CPU-only torch).
        capabilities: the visible GPUs' compute capabilities.
        torch_arches: ``torch.cuda.get_arch_list()``.
        env: the environment.
        site_dirs: where the registry's toolkit is (or will be) installed.
        toolkit_version: the installed ``cuda-toolkit`` version, or None.
        install: installs one pip requirement.
        system_homes: system-wide toolkit folders to try last.
    """
    if not torch_cuda:
        raise ToolchainError(
            'the installed torch has no CUDA support (torch.version.cuda is '
            'None): install a CUDA build of torch, e.g. '
            '"pip install --force-reinstall torch===2.13.0", or build mmcv '
            'without CUDA (FORCE_CUDA=0).')
    arches = arch_list(env, capabilities, torch_arches)
    home = find_cuda_home(torch_cuda, env, site_dirs, system_homes)
    if home is None:
        requirement = registry_requirement(torch_cuda, toolkit_version)
        log(f'no nvcc for CUDA {torch_cuda} found: installing {requirement}')
        install(requirement)
        home = find_cuda_home(torch_cuda, env, site_dirs, system_homes)
        if home is None:
            raise ToolchainError(
                f'{requirement} was installed but no nvcc {torch_cuda} '
                f'appeared under {", ".join(site_dirs)}/nvidia; set '
                f'CUDA_HOME to a CUDA {torch_cuda} toolkit.')
    if any(
            osp.realpath(home).startswith(osp.realpath(site) + os.sep)
            for site in site_dirs):
        ensure_cudart_link(home)
    return {'CUDA_HOME': home, 'TORCH_CUDA_ARCH_LIST': arches}


def _toolkit_version() -> Optional[str]:
    from importlib import metadata
    try:
        return metadata.version('cuda-toolkit')
    except metadata.PackageNotFoundError:
        return None


def _setup_from_torch() -> Dict[str, str]:
    import torch
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    capabilities = [torch.cuda.get_device_capability(i) for i in range(count)]
    return setup(torch.version.cuda, capabilities, torch.cuda.get_arch_list(),
                 dict(os.environ), site_packages(), _toolkit_version())


def check_ops() -> None:
    """Run mmcv's RoIAlign and nms on the GPU and compare them with the CPU.

    Raises:
        ToolchainError: mmcv has no CUDA ops, or they disagree with the CPU.
    """
    import torch
    from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms
    fix = ('rebuild mmcv with its CUDA ops: pip uninstall -y mmcv, then run '
           'tools/install.sh again on the GPU machine')
    if not torch.cuda.is_available():
        raise ToolchainError('no GPU is visible: the CUDA ops cannot be run.')
    if get_compiling_cuda_version() == 'not available':
        raise ToolchainError(f'the installed mmcv was built without CUDA; '
                             f'{fix}.')
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(2, 8, 32, 32, generator=gen)
    xy = torch.rand(16, 2, generator=gen) * 20
    wh = torch.rand(16, 2, generator=gen) * 10 + 1
    rois = torch.cat(
        [torch.randint(0, 2, (16, 1), generator=gen).float(), xy, xy + wh],
        dim=1)
    scores = torch.rand(16, generator=gen)
    roi_align = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=2)
    try:
        cpu_pool = roi_align(feats, rois)
        gpu_pool = roi_align(feats.cuda(), rois.cuda()).cpu()
        _, cpu_keep = nms(rois[:, 1:], scores, 0.5)
        _, gpu_keep = nms(rois[:, 1:].cuda(), scores.cuda(), 0.5)
    except RuntimeError as err:
        raise ToolchainError(f'mmcv\'s CUDA ops fail ({err}); {fix}.')
    if not torch.allclose(cpu_pool, gpu_pool, atol=1e-5):
        raise ToolchainError(f'CUDA RoIAlign disagrees with the CPU; {fix}.')
    if cpu_keep.tolist() != gpu_keep.cpu().tolist():
        raise ToolchainError(f'CUDA nms disagrees with the CPU; {fix}.')
    log(f'CUDA RoIAlign and nms agree with the CPU on '
        f'{torch.cuda.get_device_name(0)} (mmcv built with CUDA '
        f'{get_compiling_cuda_version()})')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('command', choices=['setup', 'check-ops'])
    args = parser.parse_args(argv)
    try:
        if args.command == 'setup':
            for key, value in _setup_from_torch().items():
                print(f'export {key}={shlex.quote(value)}')
        else:
            check_ops()
    except ToolchainError as err:
        log(f'FAILED: {err}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
