"""Every command in README.md, docs/ and the configs' READMEs names files and
flags that exist, every link points at a file, and every Python example
compiles (``doc_commands.py`` says what is read). The documented commands
that need neither data nor outputs of another command run as written; those
that need a dataset or the main job's outputs do not run here (each tool they
call runs its ``--help``; the e2e tests of the tools run their equivalents on
small data)."""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
from doc_commands import (commands, doc_pages, help_flags, problems,
                          python_code_of, snippets, unknown_identifiers)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_help(path):
    """A tool's ``--help`` text; the tool must print it and exit 0."""
    done = subprocess.run([sys.executable, path, '--help'],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert done.returncode == 0, (
        f'{osp.relpath(path, REPO)} --help failed:\n{done.stderr[-2000:]}')
    return done.stdout


# Tools whose documented commands need nothing but the repository: they run
# as written (when the command has no placeholder).
RUN_AS_WRITTEN = ('tools/analysis_tools/get_flops.py', )


def self_contained_commands():
    """``(where, words)`` of the documented commands that run as written:
    ``python -c`` ones and those of ``RUN_AS_WRITTEN`` without placeholders
    (``CONFIG``, ``[...]``, ``<...>``)."""
    found = []
    for page in doc_pages(REPO):
        with open(osp.join(REPO, page), encoding='utf-8') as f:
            text = f.read()
        for snippet in snippets(page, text):
            if snippet.kind != 'shell':
                continue
            for command in commands(snippet):
                words = command.words
                placeholder = any(word.isupper() or '[' in word or '<' in word
                                  for word in words)
                if python_code_of(command) is not None or (
                        command.script in RUN_AS_WRITTEN and not placeholder):
                    found.append((f'{page}:{command.line}', words))
    return found


def test_documented_paths_links_and_python_examples():
    assert 'README.md' in doc_pages(REPO)
    assert problems(REPO) == []


def test_documented_code_identifiers_exist():
    assert unknown_identifiers(REPO) == []


@pytest.mark.e2e
def test_documented_flags_are_accepted_by_the_tools():
    """Runs ``--help`` of every tool a documented command names."""
    assert problems(REPO, run_help) == []


@pytest.mark.e2e
@pytest.mark.parametrize(
    'where, words', self_contained_commands(), ids=lambda x: str(x)[:60])
def test_self_contained_commands_run_as_written(where, words):
    python = next(i for i, word in enumerate(words) if word.startswith('py'))
    argv = [sys.executable] + words[python + 1:]
    done = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f'{where}: {words}\n{done.stderr[-3000:]}'


def test_readme_is_a_front_page():
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        assert len(f.read().splitlines()) <= 300


# ---------------------------------------------------------------------------
# The checker itself, on a synthetic repository
# ---------------------------------------------------------------------------
FAKE_TOOL = '''\
import argparse
parser = argparse.ArgumentParser()
parser.add_argument('config')
parser.add_argument('--work-dir')
parser.add_argument('--cfg-options', nargs='+')
parser.parse_args()
'''
FAKE_SCRIPT = '''\
#!/usr/bin/env bash
# forwards its extra arguments to tools/fake.py
case "$1" in --fill) shift ;; esac
exec python "$(dirname "$0")/fake.py" "$@"
'''


def make_repo(root, readme, docs=None):
    files = {
        'README.md': readme,
        'tools/fake.py': FAKE_TOOL,
        'tools/fake.sh': FAKE_SCRIPT,
        'configs/a.py': 'x = 1\n',
        **(docs or {})
    }
    for name, text in files.items():
        path = osp.join(root, name)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(textwrap.dedent(text))
    subprocess.run(['git', 'init', '-q', root], check=True)
    subprocess.run(['git', 'add', '.'], cwd=root, check=True)
    return root


def fake_help(path):
    return subprocess.run([sys.executable, path, '--help'],
                          capture_output=True,
                          text=True,
                          check=True).stdout


def test_checker_accepts_correct_docs(tmp_path):
    readme = '''\
        # Fake
        See [the config](configs/a.py), [docs](docs/usage.md#the-fake-tool)
        and [below](#the-fake-one).
        Run `python tools/fake.py configs/a.py --work-dir work_dirs/x`; the
        other project's `tools/deploy.py` is not ours.

        ```bash
        python tools/fake.py configs/a.py --cfg-options a=1 \\
            --work-dir work_dirs/<exp>  # outputs are not repository files
        OMP_NUM_THREADS=2 nice -n 19 bash tools/fake.sh --fill configs/a.py \\
            [--work-dir DIR | --cfg-options K=V]
        python -c "import os; print(os.sep)" | tee work_dirs/log.txt
        pip install tensorboard --upgrade
        python $OTHER_DIR/tools/deploy.py configs/a.py --its-own-flag
        ```

        ```python
        y = norm(x)
        return x + y  # an excerpt of a method
        ```

        ## The fake one

        ```python
        config = 'configs/a.py'
        checkpoint = 'work_dirs/main_job/epoch_2.pth'
        ```
    '''
    repo = make_repo(
        str(tmp_path), readme,
        {'docs/usage.md': '# Usage\n## The `fake` tool\n'})
    assert problems(repo, fake_help) == []


def test_checker_reports_each_broken_command(tmp_path):
    readme = '''\
        # Fake
        A [missing page](docs/none.md);
        [no such heading](#usage), [another](docs/usage.md#no-such-part).
        Inline: `python tools/fake.py configs/a.py --nope`.

        ```bash
        python tools/gone.py configs/a.py
        python tools/fake.py configs/missing.py --work-dir w --unknown 3
        bash tools/fake.sh configs/a.py --not-forwarded
        python -c "print(("
        ```

        ```python
        config = 'configs/b.py'
        ```

        ```python
        def broken(:
        ```
    '''
    repo = make_repo(
        str(tmp_path), readme,
        {'docs/usage.md': '# Usage\n## The `fake` tool\n'})
    found = problems(repo, fake_help)
    assert found == [
        'README.md: link to docs/none.md, which does not exist',
        'README.md: link to #usage: no such heading',
        'README.md: link to docs/usage.md#no-such-part: no such heading',
        'README.md:4: tools/fake.py does not accept --nope',
        'README.md:7: tools/gone.py does not exist',
        'README.md:8: configs/missing.py does not exist',
        'README.md:8: tools/fake.py does not accept --unknown',
        'README.md:9: tools/fake.sh does not accept --not-forwarded',
        'README.md:10: Python does not compile: '
        "'(' was never closed (line 1)",
        'README.md:14: configs/b.py does not exist',
        'README.md:18: Python does not compile: invalid syntax (line 1)',
    ]


def test_command_splitting():
    snippet = snippets(
        'x.md', '```bash\nA=1 time python tools/t.py --a 1 [--b | --c] '
        '&& bash tools/s.sh --d # --e\n```\n')[0]
    first, second = commands(snippet)
    assert (first.script, first.flags) == ('tools/t.py', ['--a', '--b', '--c'])
    assert (second.script, second.flags) == ('tools/s.sh', ['--d'])


def test_help_flags_reads_the_option_list():
    text = ('usage: t.py [-h] [--work-dir WORK_DIR] config\n\n'
            'options:\n  -h, --help            show this help\n'
            '  --work-dir WORK_DIR   mentions --other in its help\n'
            '  --local_rank LOCAL_RANK, --local-rank LOCAL_RANK\n')
    assert help_flags(text) == {
        '--help', '--work-dir', '--local_rank', '--local-rank'
    }


def test_identifier_check_catches_what_the_code_lacks(tmp_path):
    (tmp_path / 'mmefficientmod').mkdir()
    (tmp_path / 'mmefficientmod' /
     'a.py').write_text('def load_weights(): pass')
    (tmp_path / 'README.md').write_text(
        'Call `load_weights()` or `mmefficientmod.checkpoint.check_fit`, not '
        '`load_wieghts()`, `torch.no_such_thing` or '
        '`mmefficientmod.checkpoint.gone`; `xxs` and `fp32` are words.\n'
        '```python\nnot_checked_in_blocks()\n```\n')
    assert unknown_identifiers(str(tmp_path)) == [
        'README.md: `load_wieghts()` is not in the code',
        'README.md: `torch.no_such_thing` is not in the code',
        'README.md: `mmefficientmod.checkpoint.gone` is not in the code',
    ]
