"""tools/slurm_train.sh and slurm_test.sh hand srun the job's shape and run
our tools with MMEngine's slurm launcher (a stand-in srun records the call;
no cluster is needed)."""
import os
import os.path as osp
import stat
import subprocess

import pytest
from _detseg_utils import REPO

FAKE_SRUN = '#!/bin/sh\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n'


def run_script(tmp_path, script, *args, **env):
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir(exist_ok=True)
    srun.write_text(FAKE_SRUN)
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / 'srun.log'
    full_env = dict(
        os.environ,
        PATH=f'{srun.parent}{os.pathsep}{os.environ["PATH"]}',
        SRUN_LOG=str(log),
        **env)
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', script), *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60)
    return proc, (log.read_text().splitlines() if log.exists() else None)


def test_slurm_train_passes_the_job_shape_and_the_launcher(tmp_path):
    proc, argv = run_script(
        tmp_path,
        'slurm_train.sh',
        'gpu',
        'effmod',
        'configs/x.py',
        'work_dirs/x',
        '--resume',
        GPUS='16',
        GPUS_PER_NODE='8',
        CPUS_PER_TASK='4',
        PYTHON='python3',
        SRUN_ARGS='--quotatype=auto --time=1:00:00')
    assert proc.returncode == 0, proc.stdout
    assert argv[:2] == ['-p', 'gpu']
    for option in ('--job-name=effmod', '--gres=gpu:8', '--ntasks=16',
                   '--ntasks-per-node=8', '--cpus-per-task=4',
                   '--quotatype=auto', '--time=1:00:00'):
        assert option in argv, (option, argv)
    command = argv[argv.index('python3'):]
    assert command == [
        'python3', '-u',
        osp.join(REPO, 'tools', 'train.py'), 'configs/x.py',
        '--work-dir=work_dirs/x', '--launcher', 'slurm', '--resume'
    ]


def test_slurm_test_runs_test_py_with_the_checkpoint(tmp_path):
    proc, argv = run_script(tmp_path, 'slurm_test.sh', 'gpu', 'eval',
                            'configs/x.py', 'ckpt.pth', '--out', 'r.pkl')
    assert proc.returncode == 0, proc.stdout
    assert '--ntasks=8' in argv and '--gres=gpu:8' in argv  # the defaults
    command = argv[argv.index('python'):]
    assert command == [
        'python', '-u',
        osp.join(REPO, 'tools', 'test.py'), 'configs/x.py', 'ckpt.pth',
        '--launcher', 'slurm', '--out', 'r.pkl'
    ]


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_missing_arguments_print_the_usage(tmp_path, script):
    proc, argv = run_script(tmp_path, script, 'gpu', 'job')
    assert proc.returncode == 2 and 'usage:' in proc.stdout
    assert argv is None  # srun never ran
