"""tools/cuda_toolchain.py: the installer's CUDA branch, driven with fake
nvcc scripts and fake device lists (no GPU, no network), and once with the
registry's real toolkit (marker ``cuda_toolkit``: needs the package index)."""
import functools
import os
import os.path as osp
import re
import stat
import subprocess
import sys

import pytest
import torch
from _detseg_utils import REPO, load_tool

TOOL = osp.join(REPO, 'tools', 'cuda_toolchain.py')
tc = load_tool('cuda_toolchain')

# What ptxas 13.0 said to the PTX of nvvm 13.5's cicc (the registry's
# unpinned toolkit, November 2026).
PTXAS_SKEW = ("ptxas /tmp/x.ptx, line 9; fatal   : Unsupported .version 9.5; "
              "current version is '9.0'")


def fake_toolkit(home, release, cudart=False, compile_error=None):
    """A folder laid out like a CUDA toolkit whose bin/nvcc reports
    ``release`` and "compiles" by writing the ``-o`` file, or prints
    ``compile_error`` and fails."""
    os.makedirs(osp.join(home, 'bin'), exist_ok=True)
    nvcc = osp.join(home, 'bin', 'nvcc')
    compile_step = (f'echo "{compile_error}" >&2; exit 1' if compile_error else
                    'while [ $# -gt 0 ]; do [ "$1" = -o ] && : > "$2"; '
                    'shift; done')
    with open(nvcc, 'w') as f:
        f.write('#!/bin/sh\nif [ "$1" = --version ]; then\n'
                'echo "nvcc: NVIDIA (R) Cuda compiler driver"\n'
                f'echo "Cuda compilation tools, release {release}, '
                f'V{release}.88"\nexit 0\nfi\n{compile_step}\n')
    os.chmod(nvcc, os.stat(nvcc).st_mode | stat.S_IEXEC)
    os.makedirs(osp.join(home, 'include'), exist_ok=True)
    open(osp.join(home, 'include', 'cuda_runtime.h'), 'w').close()
    if cudart:
        major = release.split('.')[0]
        os.makedirs(osp.join(home, 'lib'), exist_ok=True)
        open(osp.join(home, 'lib', f'libcudart.so.{major}'), 'w').close()
    return home


class Recorder:
    """Stands in for pip: records the requirement and, like the registry's
    wheel, puts a toolkit into the site folder."""

    def __init__(self, site, release):
        self.site, self.release, self.calls = site, release, []

    def __call__(self, requirement):
        self.calls.append(requirement)
        major = self.release.split('.')[0]
        fake_toolkit(
            osp.join(self.site, 'nvidia', f'cu{major}'),
            self.release,
            cudart=True)


def no_install(requirement):
    raise AssertionError(f'nothing should be installed ({requirement})')


def test_nvcc_release_parses_version(tmp_path):
    home = fake_toolkit(str(tmp_path / 'cuda'), '13.0')
    assert tc.nvcc_release(osp.join(home, 'bin', 'nvcc')) == '13.0'
    assert tc.nvcc_release(str(tmp_path / 'missing')) is None


def test_matching_nvcc_on_path_is_used(tmp_path):
    home = fake_toolkit(str(tmp_path / 'cuda-13.0'), '13.0')
    env = {'PATH': osp.join(home, 'bin')}
    out = tc.setup(
        '13.0', [(9, 0)], ['sm_90'],
        env, [str(tmp_path / 'sp')],
        None,
        install=no_install,
        system_homes=())
    assert out == {'CUDA_HOME': home, 'TORCH_CUDA_ARCH_LIST': '9.0'}


def test_registry_toolkit_in_environment_preferred(tmp_path):
    site = str(tmp_path / 'site-packages')
    reg = fake_toolkit(osp.join(site, 'nvidia', 'cu13'), '13.0', cudart=True)
    other = fake_toolkit(str(tmp_path / 'cuda-13.0'), '13.0')
    env = {'PATH': osp.join(other, 'bin')}
    out = tc.setup(
        '13.0', [(8, 0)], ['sm_80', 'sm_90'],
        env, [site],
        None,
        install=no_install,
        system_homes=())
    assert out['CUDA_HOME'] == reg
    # The linker's -lcudart needs the unversioned name.
    assert osp.realpath(osp.join(reg, 'lib', 'libcudart.so')) == \
        osp.realpath(osp.join(reg, 'lib', 'libcudart.so.13'))


def test_no_nvcc_installs_registry_toolkit(tmp_path):
    site = str(tmp_path / 'site-packages')
    pip = Recorder(site, '13.0')
    out = tc.setup(
        '13.0', [(9, 0)], ['sm_90'], {'PATH': ''}, [site],
        '13.0.3',
        install=pip,
        system_homes=())
    assert pip.calls == ['cuda-toolkit[nvcc,cccl,crt,cudart,nvvm]==13.0.3']
    assert out['CUDA_HOME'] == osp.join(site, 'nvidia', 'cu13')
    assert osp.islink(osp.join(out['CUDA_HOME'], 'lib', 'libcudart.so'))


def test_mismatched_nvcc_on_path_is_skipped_for_registry(tmp_path):
    old = fake_toolkit(str(tmp_path / 'cuda-12.4'), '12.4')
    site = str(tmp_path / 'site-packages')
    pip = Recorder(site, '13.0')
    out = tc.setup(
        '13.0', [(9, 0)], ['sm_90'], {'PATH': osp.join(old, 'bin')}, [site],
        None,
        install=pip,
        system_homes=())
    # Without torch's cuda-toolkit version, any 13.0 release is asked for.
    assert pip.calls == ['cuda-toolkit[nvcc,cccl,crt,cudart,nvvm]==13.0.*']
    assert out['CUDA_HOME'] != old


def test_wrapper_script_on_path_is_not_a_toolkit(tmp_path):
    """An nvcc on PATH outside its toolkit (e.g. /usr/local/bin/nvcc
    calling /usr/local/cuda-13.0/bin/nvcc) does not make CUDA_HOME."""
    system = fake_toolkit(str(tmp_path / 'cuda'), '13.0')
    wrapper_bin = tmp_path / 'local' / 'bin'
    wrapper_bin.mkdir(parents=True)
    wrapper = wrapper_bin / 'nvcc'
    wrapper.write_text(f'#!/bin/sh\nexec {system}/bin/nvcc "$@"\n')
    wrapper.chmod(0o755)
    out = tc.setup(
        '13.0', [(9, 0)], ['sm_90'], {'PATH': str(wrapper_bin)},
        [str(tmp_path / 'sp')],
        None,
        install=no_install,
        system_homes=(system, ))
    assert out['CUDA_HOME'] == system


def test_same_major_other_minor_accepted(tmp_path):
    home = fake_toolkit(str(tmp_path / 'cuda-13.1'), '13.1')
    out = tc.setup(
        '13.0', [(9, 0)], ['sm_90'], {'PATH': osp.join(home, 'bin')},
        [str(tmp_path / 'sp')],
        None,
        install=no_install,
        system_homes=())
    assert out['CUDA_HOME'] == home


def test_explicit_cuda_home_mismatch_names_fix(tmp_path):
    old = fake_toolkit(str(tmp_path / 'cuda-12.4'), '12.4')
    with pytest.raises(tc.ToolchainError) as err:
        tc.setup(
            '13.0', [(9, 0)], ['sm_90'], {
                'CUDA_HOME': old,
                'PATH': ''
            }, [str(tmp_path / 'sp')],
            None,
            install=no_install,
            system_homes=())
    message = str(err.value)
    assert '12.4' in message and '13.0' in message
    assert 'unset it' in message and 'cuda-toolkit[nvcc,cccl,crt,cudart,nvvm]' in message


def test_explicit_cuda_home_without_nvcc(tmp_path):
    with pytest.raises(tc.ToolchainError, match='no working bin/nvcc'):
        tc.setup(
            '13.0', [(9, 0)], ['sm_90'], {
                'CUDA_HOME': str(tmp_path),
                'PATH': ''
            }, [str(tmp_path / 'sp')],
            None,
            install=no_install,
            system_homes=())


def test_failed_install_names_fix(tmp_path):

    def failing(requirement):
        raise tc.ToolchainError(f'could not install {requirement}: ...')

    with pytest.raises(tc.ToolchainError, match='could not install'):
        tc.setup(
            '13.0', [(9, 0)], ['sm_90'], {'PATH': ''}, [str(tmp_path / 'sp')],
            None,
            install=failing,
            system_homes=())


def test_install_without_nvcc_appearing_is_an_error(tmp_path):
    with pytest.raises(tc.ToolchainError, match='no nvcc 13.0 appeared'):
        tc.setup(
            '13.0', [(9, 0)], ['sm_90'], {'PATH': ''}, [str(tmp_path / 'sp')],
            None,
            install=lambda r: None,
            system_homes=())


def test_cuda12_torch_needs_system_toolkit(tmp_path):
    with pytest.raises(tc.ToolchainError, match='set CUDA_HOME'):
        tc.setup(
            '12.8', [(9, 0)], ['sm_90'], {'PATH': ''}, [str(tmp_path / 'sp')],
            None,
            install=no_install,
            system_homes=())


def test_cpu_only_torch_is_an_error(tmp_path):
    with pytest.raises(tc.ToolchainError, match='no CUDA support'):
        tc.setup(
            None, [], [], {'PATH': ''}, [str(tmp_path)],
            None,
            install=no_install,
            system_homes=())


def test_nvcc_components_are_pinned_to_the_toolkit_release(capsys):
    """nvcc's dependencies (nvvm's cicc, crt, the runtime) come with their
    extras, which cuda-toolkit pins to its own release: unpinned, pip took
    nvvm 13.5.37 beside nvcc 13.0.88, whose PTX ptxas 13.0 rejects."""
    assert tc.main(['requirement', '13.0.2']) == 0
    assert capsys.readouterr().out.strip() == \
        'cuda-toolkit[nvcc,cccl,crt,cudart,nvvm]==13.0.2'


def test_compile_failure_shows_compiler_message_and_fix(tmp_path):
    site = str(tmp_path / 'site-packages')
    fake_toolkit(
        osp.join(site, 'nvidia', 'cu13'),
        '13.0',
        cudart=True,
        compile_error=PTXAS_SKEW)
    with pytest.raises(tc.ToolchainError) as err:
        tc.setup(
            '13.0', [(9, 0)], ['sm_90'], {'PATH': ''}, [site],
            '13.0.2',
            install=no_install,
            system_homes=())
    message = str(err.value)
    assert 'Unsupported .version 9.5' in message  # the compiler's words
    assert 'compute_90' in message  # the command, with the target arch
    assert 'different CUDA releases' in message
    assert ('pip install --force-reinstall '
            '"cuda-toolkit[nvcc,cccl,crt,cudart,nvvm]==13.0.2"') in message


def test_compile_failure_of_system_toolkit_names_cuda_home(tmp_path):
    home = fake_toolkit(
        str(tmp_path / 'cuda'),
        '13.0',
        compile_error='nvcc fatal : '
        "Unsupported gpu architecture 'compute_100'")
    with pytest.raises(tc.ToolchainError) as err:
        tc.setup(
            '13.0', [(10, 0)], ['sm_100'], {'PATH': osp.join(home, 'bin')},
            [str(tmp_path / 'sp')],
            None,
            install=no_install,
            system_homes=())
    assert "Unsupported gpu architecture 'compute_100'" in str(err.value)
    assert 'set CUDA_HOME' in str(err.value)


@pytest.mark.parametrize('value,flags', [
    ('9.0', ['-gencode=arch=compute_90,code=sm_90']),
    ('8.0;9.0+PTX', [
        '-gencode=arch=compute_80,code=sm_80',
        '-gencode=arch=compute_90,code=compute_90',
        '-gencode=arch=compute_90,code=sm_90'
    ]),
    ('9.0a 12.0', [
        '-gencode=arch=compute_120,code=sm_120',
        '-gencode=arch=compute_90a,code=sm_90a'
    ]),
])
def test_arch_flags(value, flags):
    """The probe gets the flags torch's extension builder gives mmcv."""
    assert tc.arch_flags(value) == flags


def test_arch_flags_rejects_unknown_arches():
    with pytest.raises(tc.ToolchainError, match='Hoppr'):
        tc.arch_flags('8.0;Hoppr')


@pytest.mark.parametrize(
    'caps,torch_arches,expected',
    [
        ([(9, 0)], ['sm_80', 'sm_90'], '9.0'),
        ([(8, 6), (8, 0), (8, 6)], ['sm_80', 'sm_86', 'sm_90'], '8.0;8.6'),
        # A GPU newer than torch knows is built for torch's newest arch.
        ([(12, 1)], ['sm_90', 'sm_100', 'sm_120'], '12.0'),
        ([(13, 0), (9, 0)], ['sm_90', 'sm_120'], '9.0;12.0'),
    ])
def test_arch_list_from_devices(caps, torch_arches, expected):
    assert tc.arch_list({}, caps, torch_arches) == expected


def test_arch_list_user_override_wins():
    env = {'TORCH_CUDA_ARCH_LIST': '8.0;9.0+PTX'}
    assert tc.arch_list(env, [(7, 5)], ['sm_75']) == '8.0;9.0+PTX'


def test_arch_list_without_gpu_names_fix():
    with pytest.raises(tc.ToolchainError, match='TORCH_CUDA_ARCH_LIST'):
        tc.arch_list({}, [], ['sm_90'])
    assert tc.arch_list({'TORCH_CUDA_ARCH_LIST': '9.0'}, [], []) == '9.0'


def test_setup_command_prints_exports(tmp_path):
    """The command line the installer evals, on this machine's torch: with
    a matching fake nvcc on PATH and an explicit arch list it must print
    both variables, or fail with a message when torch has no CUDA."""
    release = torch.version.cuda
    home = fake_toolkit(str(tmp_path / 'cuda'), release or '13.0')
    env = dict(
        os.environ,
        PATH=osp.join(home, 'bin') + os.pathsep + os.environ.get('PATH', ''),
        TORCH_CUDA_ARCH_LIST='9.0')
    env.pop('CUDA_HOME', None)
    env.pop('CUDA_PATH', None)
    proc = subprocess.run([sys.executable, TOOL, 'setup'],
                          env=env,
                          capture_output=True,
                          text=True)
    if release is None:
        assert proc.returncode == 1 and 'no CUDA support' in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert "export TORCH_CUDA_ARCH_LIST=9.0" in proc.stdout
    assert 'export CUDA_HOME=' in proc.stdout


@pytest.mark.cuda
def test_check_ops_on_gpu():
    tc.check_ops()


def package_index_reachable() -> bool:
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'index', 'versions', 'nvidia-cuda-nvcc'],
        capture_output=True,
        text=True,
        timeout=120)
    return proc.returncode == 0 and '13.0.88' in proc.stdout


def dist_versions(site):
    """``{distribution: version}`` of the wheels installed in ``site``."""
    found = {}
    for name in os.listdir(site):
        match = re.fullmatch(r'(.+)-([^-]+)\.dist-info', name)
        if match:
            found[match.group(1).lower().replace('_', '-')] = match.group(2)
    return found


@pytest.mark.cuda_toolkit
@pytest.mark.parametrize(
    'toolkit_version',
    # 13.0.2: torch 2.11's release (the device machines' torch), whose nvcc
    # extra leaves nvvm and crt unpinned. Then this environment's own.
    sorted({'13.0.2', tc._toolkit_version() or '13.0.2'}))
def test_registry_toolkit_compiles_a_kernel(tmp_path, toolkit_version):
    """The real registry toolkit, installed by the tool into a temporary
    folder, compiles the probe kernel for sm_90 (no GPU needed): the check
    that would have caught nvvm 13.5 beside nvcc 13.0."""
    if not package_index_reachable():
        pytest.skip('the package index is not reachable (this test installs '
                    "the registry's nvcc 13.0, about 270 MB unpacked); run "
                    'it where pip can reach the index')
    site = str(tmp_path / 'site-packages')
    out = tc.setup(
        '13.0', [(9, 0)], ['sm_90'], {'PATH': ''}, [site],
        toolkit_version,
        install=functools.partial(tc.pip_install, target=site),
        system_homes=())
    assert out == {
        'CUDA_HOME': osp.join(site, 'nvidia', 'cu13'),
        'TORCH_CUDA_ARCH_LIST': '9.0'
    }
    versions = dist_versions(site)
    nvcc = versions['nvidia-cuda-nvcc']
    assert nvcc.startswith('13.0.')
    for part in ('nvidia-nvvm', 'nvidia-cuda-crt'):
        assert versions[part] == nvcc, versions
