"""The CUDA toolchain that builds mmcv's CUDA ops; called by tools/install.sh.

Usage::

    python tools/cuda_toolchain.py setup       # prints `export` lines
    python tools/cuda_toolchain.py check-ops   # RoIAlign and nms on the GPU
    python tools/cuda_toolchain.py requirement 13.0.3  # pinned pip spec

``setup`` finds an nvcc of torch's CUDA major version, else installs the
registry's (pip reads ``PIP_NO_INDEX`` and ``PIP_FIND_LINKS``, so a
wheelhouse works too), compiles a one-kernel ``.cu`` file for the target
architectures before the long mmcv build, and prints ``CUDA_HOME`` and
``TORCH_CUDA_ARCH_LIST`` for the shell to ``eval`` (messages go to stderr).
Only the standard library is imported at module level, so the tests drive
every decision with fake ``nvcc`` scripts (docs/gpu.md).
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

# The registry's toolkit wheels put CUDA >= 13 in one folder, nvidia/cu<N>,
# laid out like a system toolkit (bin/nvcc, include, lib): CUDA_HOME can
# point there. The cccl extra brings the CUB/Thrust headers mmcv includes.
# nvidia-cuda-nvcc depends on nvidia-nvvm (cicc), nvidia-cuda-crt and
# nvidia-cuda-runtime without an upper bound, so pip takes their newest
# release: with nvcc 13.0.88 that was nvvm 13.5.37, whose cicc writes PTX
# that ptxas 13.0 rejects ("Unsupported .version 9.5"). cuda-toolkit pins
# each to the toolkit's own release under its extra, so all three are asked
# for (where a release pins them already, the pins agree).
REGISTRY_EXTRAS = 'nvcc,cccl,crt,cudart,nvvm'
REGISTRY_MIN_MAJOR = 13
# Where system-wide toolkits live when nvcc is not on PATH.
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
    match = re.search(r'release (\d+)\.(\d+)', out)
    return f'{match.group(1)}.{match.group(2)}' if match else None


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
    """``(where it was found, CUDA home)`` pairs in the order they are
    tried, without duplicates: the registry's ``nvidia/cu<N>`` in
    ``site_dirs``, the toolkit of the nvcc on PATH, ``system_homes``."""
    found = [
        ('this environment', home) for site in site_dirs
        for home in sorted(glob.glob(osp.join(site, 'nvidia', 'cu[0-9]*')))
    ]
    on_path = shutil.which('nvcc', path=env.get('PATH', ''))
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
    """The pip requirement for the registry's nvcc of ``torch_cuda``, its
    components pinned to one release: the installed ``toolkit_version``
    (whose headers match torch's CUDA libraries) when of that release."""
    if int(_major(torch_cuda)) < REGISTRY_MIN_MAJOR:
        raise ToolchainError(
            f'torch was built with CUDA {torch_cuda}; the registry packages '
            f'CUDA {torch_cuda} in several folders that cannot serve as one '
            f'CUDA_HOME. Install the CUDA {torch_cuda} toolkit from NVIDIA '
            f'(or load it as a module on a cluster) and set CUDA_HOME to it.')
    if toolkit_version and toolkit_version.startswith(torch_cuda + '.'):
        return f'cuda-toolkit[{REGISTRY_EXTRAS}]=={toolkit_version}'
    return f'cuda-toolkit[{REGISTRY_EXTRAS}]=={torch_cuda}.*'


def parse_arches(arch_list_value: str) -> List[str]:
    """nvcc ``-gencode`` flags for a ``TORCH_CUDA_ARCH_LIST`` value
    (``"8.0;9.0+PTX"``, ``"9.0a"``, separated by ``;`` or spaces)."""
    flags = []
    for item in re.split(r'[;\s]+', arch_list_value.strip()):
        match = re.fullmatch(r'(\d+)\.(\d+)([a-z]?)(\+PTX)?', item)
        if not match:
            raise ToolchainError(
                f'TORCH_CUDA_ARCH_LIST entry {item!r} is not a compute '
                f'capability; write them as "8.0;9.0" (optionally "9.0+PTX" '
                f'or "9.0a").')
        arch = match.group(1) + match.group(2) + match.group(3)
        codes = [f'sm_{arch}'
                 ] + ([f'compute_{arch}'] if match.group(4) else [])
        flags.append(f'-gencode=arch=compute_{arch},code=[{",".join(codes)}]')
    return flags


def compile_probe(home: str, arches: str, fix: str) -> None:
    """Compile :data:`PROBE_KERNEL` with ``home``'s nvcc for ``arches``, or
    raise :class:`ToolchainError` with the compiler's message and ``fix``."""
    nvcc = osp.join(home, 'bin', 'nvcc')
    with tempfile.TemporaryDirectory() as tmp:
        source, obj = osp.join(tmp, 'probe.cu'), osp.join(tmp, 'probe.o')
        with open(source, 'w') as f:
            f.write(PROBE_KERNEL)
        cmd = [
            nvcc, '-std=c++17', '-c', source, '-o', obj, *parse_arches(arches)
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=600)
            output, ok = (proc.stdout + proc.stderr).strip(), \
                proc.returncode == 0 and osp.isfile(obj)
        except (OSError, subprocess.SubprocessError) as err:
            output, ok = str(err), False
    if not ok:
        hint = ''
        if 'Unsupported .version' in output:
            hint = ('cicc (nvidia-nvvm) writes a newer PTX than this ptxas '
                    'reads: the toolkit\'s parts are of different CUDA '
                    'releases. ')
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
    """A CUDA home whose nvcc has torch's CUDA major version, or None; an
    exact ``major.minor`` match wins. A ``$CUDA_HOME`` (or ``$CUDA_PATH``)
    without such an nvcc raises :class:`ToolchainError`: the user chose it,
    so it is not silently replaced."""
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
    """Give the registry's toolkit the unversioned ``libcudart.so``: the
    wheels ship ``libcudart.so.<N>``, the build links with ``-lcudart``."""
    lib = osp.join(home, 'lib')
    if osp.exists(osp.join(lib, 'libcudart.so')):
        return
    versioned = sorted(glob.glob(osp.join(lib, 'libcudart.so.[0-9]*')))
    if versioned:
        os.symlink(osp.basename(versioned[0]), osp.join(lib, 'libcudart.so'))


def arch_list(env: Dict[str, str], capabilities: Sequence[Tuple[int, int]],
              torch_arches: Sequence[str]) -> str:
    """``TORCH_CUDA_ARCH_LIST`` for the build: the user's (in ``env``), else
    the visible GPUs' ``capabilities``; a GPU newer than the newest of
    ``torch_arches`` (``torch.cuda.get_arch_list()``) is built for that one,
    as torch's own extension builder does."""
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
    arches = {
        min(tuple(c), newest) if newest else tuple(c)
        for c in capabilities
    }
    return ';'.join(f'{major}.{minor}' for major, minor in sorted(arches))


def pip_install(requirement: str, target: Optional[str] = None) -> None:
    """Install ``requirement`` into this interpreter's environment (or into
    the folder ``target``)."""
    cmd = [
        sys.executable, '-m', 'pip', 'install', '--disable-pip-version-check',
        requirement
    ] + (['--target', target] if target else [])
    log(' '.join(shlex.quote(c) for c in cmd))
    if subprocess.run(cmd, stdout=sys.stderr).returncode != 0:
        offline = os.environ.get('PIP_NO_INDEX', '') not in ('', '0')
        where = ('Add it to the wheelhouse (tools/install.sh '
                 '--fill-wheelhouse)'
                 if offline else 'Check access to the package index')
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
    """``CUDA_HOME`` and ``TORCH_CUDA_ARCH_LIST`` for the mmcv build:
    installs the registry's nvcc (``install(requirement)``) when no matching
    one is found, and checks that it compiles a kernel for the target
    architectures (:class:`ToolchainError` with the compiler's message and
    the fix otherwise). ``site_dirs``: where the registry's toolkit is (or
    goes); ``toolkit_version``: the installed ``cuda-toolkit``'s."""
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
