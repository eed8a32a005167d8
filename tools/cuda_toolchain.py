"""Find or install the CUDA toolkit that builds mmcv's CUDA ops.

Usage::

    python tools/cuda_toolchain.py setup       # prints `export` lines
    python tools/cuda_toolchain.py check-ops   # RoIAlign and nms on the GPU
    python tools/cuda_toolchain.py requirement 13.0.3  # pinned pip spec

Called by tools/install.sh; what it decides and why: docs/gpu.md. Only the
standard library is imported at module level, so that the tests can drive
every decision with fake ``nvcc`` scripts.
"""
import argparse
import glob
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from unittest import mock

# nvcc's components pinned to the toolkit's release through their extras
# (unpinned, pip took nvvm 13.5 beside nvcc 13.0): docs/gpu.md, "The toolkit
# pin". cccl brings the CUB/Thrust headers mmcv includes.
REGISTRY_EXTRAS = 'nvcc,cccl,crt,cudart,nvvm'
# Below 13 the registry splits a toolkit over folders: no single CUDA_HOME.
REGISTRY_MIN_MAJOR = 13
SYSTEM_HOMES = ('/usr/local/cuda', )
# One kernel that goes through every stage of nvcc (front end, cicc, ptxas,
# fatbinary, host compiler) with the flags mmcv's build uses.
PROBE_KERNEL = r"""
#include <cuda_fp16.h>
#include <cuda_runtime.h>
__global__ void probe_sum(const __half* x, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) atomicAdd(out, __half2float(x[i]));
}
"""


class ToolchainError(RuntimeError):
    """A step of the CUDA toolchain failed; the message names the fix."""


def log(message: str) -> None:
    print(f'[cuda_toolchain] {message}', file=sys.stderr, flush=True)


def nvcc_release(nvcc: str) -> Optional[str]:
    """The ``release X.Y`` that ``nvcc --version`` prints, or None."""
    try:
        out = subprocess.run([nvcc, '--version'],
                             capture_output=True,
                             text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'release (\d+\.\d+)', out)
    return match and match.group(1)


def _major(version: str) -> str:
    return version.split('.')[0]


def is_toolkit(home: str) -> bool:
    """Whether ``home`` has nvcc and the runtime headers (an nvcc on PATH may
    be a wrapper script outside its toolkit)."""
    return (osp.isfile(osp.join(home, 'bin', 'nvcc'))
            and osp.isfile(osp.join(home, 'include', 'cuda_runtime.h')))


def candidate_homes(
        env: Dict[str, str],
        site_dirs: Sequence[str],
        system_homes: Sequence[str] = SYSTEM_HOMES) -> List[Tuple[str, str]]:
    """``(where it was found, CUDA home)`` pairs, in the order they are tried
    and without duplicates: the registry's ``nvidia/cu<N>`` in ``site_dirs``,
    the toolkit of the nvcc on PATH, ``system_homes``."""
    found = [
        ('this environment', home) for site in site_dirs
        for home in sorted(glob.glob(osp.join(site, 'nvidia', 'cu[0-9]*')))
    ]
    on_path = shutil.which('nvcc', path=env.get('PATH', ''))
    if on_path:
        found.append(('PATH', osp.dirname(osp.dirname(osp.realpath(on_path)))))
    found += [(home, home) for home in system_homes]
    unique = {}
    for origin, home in found:
        if is_toolkit(home):
            unique.setdefault(osp.realpath(home), (origin, home))
    return list(unique.values())


def registry_requirement(torch_cuda: str,
                         toolkit_version: Optional[str]) -> str:
    """The pip requirement for the registry's nvcc of ``torch_cuda``, pinned
    to the installed ``toolkit_version`` when it is of that release."""
    if int(_major(torch_cuda)) < REGISTRY_MIN_MAJOR:
        raise ToolchainError(
            f'torch was built with CUDA {torch_cuda}; the registry packages '
            f'CUDA {torch_cuda} in several folders that cannot serve as one '
            f'CUDA_HOME. Install the CUDA {torch_cuda} toolkit from NVIDIA '
            f'(or load it as a module on a cluster) and set CUDA_HOME to it.')
    if toolkit_version and toolkit_version.startswith(torch_cuda + '.'):
        return f'cuda-toolkit[{REGISTRY_EXTRAS}]=={toolkit_version}'
    return f'cuda-toolkit[{REGISTRY_EXTRAS}]=={torch_cuda}.*'


def arch_flags(arches: str) -> List[str]:
    """nvcc's ``-gencode`` flags for a ``TORCH_CUDA_ARCH_LIST`` value, as
    torch's extension builder (which builds mmcv) makes them."""
    from torch.utils.cpp_extension import _get_cuda_arch_flags
    with mock.patch.dict(os.environ, {'TORCH_CUDA_ARCH_LIST': arches}):
        try:
            return _get_cuda_arch_flags()
        except ValueError as err:
            raise ToolchainError(
                f'TORCH_CUDA_ARCH_LIST={arches}: {err}; write compute '
                f'capabilities as "8.0;9.0" (optionally "9.0+PTX" or "9.0a").')


def compile_probe(home: str, arches: str, fix: str) -> None:
    """Compile :data:`PROBE_KERNEL` with ``home``'s nvcc for ``arches``, or
    raise :class:`ToolchainError` with the compiler's message and ``fix``."""
    with tempfile.TemporaryDirectory() as tmp:
        src, obj = osp.join(tmp, 'probe.cu'), osp.join(tmp, 'probe.o')
        with open(src, 'w') as f:
            f.write(PROBE_KERNEL)
        nvcc = osp.join(home, 'bin', 'nvcc')
        cmd = [nvcc, '-std=c++17', '-c', src, '-o', obj, *arch_flags(arches)]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=600)
            output = (proc.stdout + proc.stderr).strip()
            ok = proc.returncode == 0 and osp.isfile(obj)
        except (OSError, subprocess.SubprocessError) as err:
            output, ok = str(err), False
    if not ok:
        hint = ('cicc (nvidia-nvvm) writes a newer PTX than this ptxas reads: '
                'the toolkit\'s parts are of different CUDA releases. '
                if 'Unsupported .version' in output else '')
        raise ToolchainError(
            f'nvcc in {home} cannot compile a one-kernel test file for '
            f'TORCH_CUDA_ARCH_LIST={arches}:\n  $ {" ".join(cmd)}'
            f'\n{output or "(no output)"}\n{hint}Fix: {fix}')
    log(f'nvcc in {home} compiles a test kernel for {arches}')


def find_cuda_home(
        torch_cuda: str,
        env: Dict[str, str],
        site_dirs: Sequence[str],
        system_homes: Sequence[str] = SYSTEM_HOMES) -> Optional[str]:
    """A CUDA home whose nvcc has torch's CUDA major version (an exact
    ``major.minor`` match first), or None. A ``$CUDA_HOME`` (or
    ``$CUDA_PATH``) without one is an error, not silently replaced."""
    explicit = env.get('CUDA_HOME') or env.get('CUDA_PATH')
    if explicit:
        release = is_toolkit(explicit) and nvcc_release(
            osp.join(explicit, 'bin', 'nvcc'))
        if not release or _major(release) != _major(torch_cuda):
            has = (f'nvcc {release} (torch refuses to build extensions '
                   f'across CUDA major versions)' if release else
                   'no working bin/nvcc or no include/cuda_runtime.h')
            raise ToolchainError(
                f'CUDA_HOME={explicit} has {has}; torch was built with CUDA '
                f'{torch_cuda}. Point CUDA_HOME at a CUDA '
                f'{_major(torch_cuda)}.x toolkit, or unset it so that the '
                f'installer finds or installs a matching nvcc '
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


def arch_list(env: Dict[str, str], capabilities: Sequence[Tuple[int, int]],
              torch_arches: Sequence[str]) -> str:
    """``TORCH_CUDA_ARCH_LIST`` for the build: the user's (in ``env``), else
    the visible GPUs' ``capabilities``, each capped at the newest of
    ``torch_arches`` (``torch.cuda.get_arch_list()``) as torch does."""
    chosen = env.get('TORCH_CUDA_ARCH_LIST', '').strip()
    if chosen:
        return chosen
    if not capabilities:
        raise ToolchainError(
            'no GPU is visible, so the architectures to build mmcv\'s CUDA '
            'ops for are unknown. Set TORCH_CUDA_ARCH_LIST, e.g. '
            'TORCH_CUDA_ARCH_LIST="8.0;9.0" for A100 and H100/H200, or run '
            'the installer on a machine with the GPUs.')
    sms = [int(re.sub(r'\D', '', a)) for a in torch_arches if 'sm_' in a]
    newest = divmod(max(sms), 10) if sms else max(map(tuple, capabilities))
    arches = {min(tuple(c), newest) for c in capabilities}
    return ';'.join(f'{major}.{minor}' for major, minor in sorted(arches))


def pip_install(requirement: str, target: Optional[str] = None) -> None:
    """Install ``requirement`` into this environment (or ``target``)."""
    cmd = [
        sys.executable, '-m', 'pip', 'install', '--disable-pip-version-check',
        requirement
    ] + (['--target', target] if target else [])
    log(shlex.join(cmd))
    if subprocess.run(cmd, stdout=sys.stderr).returncode != 0:
        where = ('Add it to the wheelhouse (tools/install.sh '
                 '--fill-wheelhouse)' if os.environ.get('PIP_NO_INDEX', '')
                 not in ('', '0') else 'Check access to the package index')
        raise ToolchainError(
            f'could not install {requirement}. {where}, or set CUDA_HOME to '
            'a CUDA toolkit of the same major version.')


def setup(torch_cuda: Optional[str],
          capabilities: Sequence[Tuple[int, int]],
          torch_arches: Sequence[str],
          env: Dict[str, str],
          site_dirs: Sequence[str],
          toolkit_version: Optional[str],
          install: Callable[[str], None] = pip_install,
          system_homes: Sequence[str] = SYSTEM_HOMES) -> Dict[str, str]:
    """``CUDA_HOME`` and ``TORCH_CUDA_ARCH_LIST`` for the mmcv build, with
    the registry's nvcc installed (``install(requirement)``) into
    ``site_dirs`` when none matches, and checked to compile a kernel.
    ``toolkit_version``: the installed ``cuda-toolkit``'s, or None."""
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
        # The wheels ship libcudart.so.<N>; the build links with -lcudart.
        link = osp.join(home, 'lib', 'libcudart.so')
        versioned = sorted(glob.glob(link + '.[0-9]*'))
        if versioned and not osp.exists(link):
            os.symlink(osp.basename(versioned[0]), link)
        pinned = registry_requirement(torch_cuda, toolkit_version)
        fix = (f'reinstall the registry\'s toolkit with its parts pinned to '
               f'one release: pip install --force-reinstall "{pinned}"')
    else:
        fix = (f'set CUDA_HOME to a CUDA {torch_cuda} toolkit that compiles '
               f'for these architectures (or unset it and remove other nvcc '
               f'from PATH, so that the installer installs the registry\'s '
               f'pinned toolkit), or set TORCH_CUDA_ARCH_LIST to '
               f'architectures this nvcc supports')
    compile_probe(home, arches, fix)
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
    paths = sysconfig.get_paths()
    return setup(torch.version.cuda, capabilities, torch.cuda.get_arch_list(),
                 dict(os.environ), sorted({paths['purelib'],
                                           paths['platlib']}),
                 _toolkit_version())


def check_ops() -> None:
    """Run mmcv's RoIAlign and nms on the GPU and compare them with the CPU
    (:class:`ToolchainError` when they are missing or disagree)."""
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
    parser.add_argument(
        'command', choices=['setup', 'check-ops', 'requirement'])
    parser.add_argument(
        'toolkit_version',
        nargs='?',
        help='requirement: the cuda-toolkit release, e.g. 13.0.3 (prints its '
        'pip requirement with nvcc\'s components pinned)')
    args = parser.parse_args(argv)
    if (args.command == 'requirement') != bool(args.toolkit_version):
        parser.error('the cuda-toolkit version goes with "requirement" only, '
                     'e.g. "requirement 13.0.3"')
    try:
        if args.command == 'setup':
            for key, value in _setup_from_torch().items():
                print(f'export {key}={shlex.quote(value)}')
        elif args.command == 'requirement':
            release = '.'.join(args.toolkit_version.split('.')[:2])
            print(registry_requirement(release, args.toolkit_version))
        else:
            check_ops()
    except ToolchainError as err:
        log(f'FAILED: {err}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
