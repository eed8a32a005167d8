"""Reading the commands, paths, flags and links out of the documentation.

The documentation is README.md, docs/*.md and configs/*/README.md. What is
read from a page:

- fenced ``bash``/``shell``/``sh``/``console`` blocks and inline code spans
  that start a command (``python ...``, ``bash ...``, ``pytest ...``,
  ``tools/x.sh ARGS``): each command, split at ``&&``, ``;`` and ``|`` (a
  ``|`` inside ``[...]`` is an alternative of a usage line, not a pipe);
- fenced ``python`` blocks, and the code of ``python -c``: the code itself
  (it must compile) and its string constants (paths);
- markdown links to files of the repository;
- code identifiers in inline code spans (``check_fit``,
  ``mmefficientmod.deploy.cpu_predictor``, ``switch_to_deploy()``): each must
  be a name of this project's code (a word of its Python files) or resolve
  in the library it names (``torch.load``).

A *repository path* is a token whose first component is one of the
repository's top-level entries (``configs/...``, ``tools/...``); outputs
(``work_dirs/``, ``data/``, ``checkpoints/``) and placeholders (``<exp>``,
``$VAR``) are not. The script a command runs must exist whatever its name,
unless it lives in another checkout (``$MMDEPLOY_DIR/tools/deploy.py``).
"""
import ast
import glob
import os.path as osp
import re
import shlex
import subprocess
import textwrap
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

SHELL_LANGS = {'bash', 'shell', 'sh', 'console'}
PYTHON_LANGS = {'python', 'py'}
COMMAND_STARTS = ('python', 'bash ', 'sh ', 'pytest', '.venv/')
# Prefixes that run the rest of the command line.
WRAPPERS = {'time', 'nice', 'env', 'unshare', 'exec', 'sudo'}
SEPARATORS = {'&&', '||', ';', '|', '&'}
FENCE = re.compile(r'^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)')
INLINE_CODE = re.compile(r'(?<!`)`([^`\n]+)`(?!`)')
FENCED_BLOCK = re.compile(r'^ *(```|~~~).*?^ *\1', re.M | re.S)
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
USAGE_FLAG = re.compile(r'(?<![\w-])(--[A-Za-z0-9][\w-]*)')


@dataclass
class Snippet:
    """One piece of code of a page: ``kind`` is 'shell' or 'python'."""
    page: str
    line: int
    kind: str
    code: str


@dataclass
class Command:
    """One command of a shell snippet (``line``: its first line in the
    page): the script it runs (a repository path, or None for another
    program) and its ``--flags``."""
    line: int
    words: List[str]
    script: Optional[str] = None
    flags: List[str] = field(default_factory=list)


def doc_pages(repo: str) -> List[str]:
    """The documentation pages, relative to ``repo``."""
    pages = ['README.md']
    for pattern in ('docs/*.md', 'configs/*/README.md'):
        pages += sorted(
            osp.relpath(p, repo) for p in glob.glob(osp.join(repo, pattern)))
    return [p for p in pages if osp.isfile(osp.join(repo, p))]


def tracked_top_level(repo: str) -> Set[str]:
    """The repository's top-level entries (from git, so that outputs such
    as ``work_dirs`` or ``.venv`` never count as repository files)."""
    out = subprocess.run(['git', 'ls-files'],
                         cwd=repo,
                         capture_output=True,
                         text=True,
                         check=True).stdout
    return {line.split('/')[0] for line in out.splitlines() if line}


def snippets(page: str, text: str) -> List[Snippet]:
    """The fenced blocks and command-like inline code spans of a page."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            for span in INLINE_CODE.findall(lines[i]):
                # A bare `tools/x.py` in prose may name another project's
                # tool; with arguments it is a command line of ours.
                if span.startswith(COMMAND_STARTS) or (
                        span.startswith('tools/') and ' ' in span):
                    found.append(Snippet(page, i + 1, 'shell', span))
            i += 1
            continue
        fence, lang = match['fence'], match['lang'].lower()
        start = i + 1
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(match['indent']):])
            i += 1
        i += 1  # the closing fence
        if lang in SHELL_LANGS:
            found.append(Snippet(page, start + 1, 'shell', '\n'.join(body)))
        elif lang in PYTHON_LANGS:
            found.append(Snippet(page, start + 1, 'python', '\n'.join(body)))
    return found


def links(text: str) -> List[str]:
    """Targets of the page's markdown links within the repository (no
    URLs), each ``path#anchor``, ``path`` or ``#anchor``."""
    return [
        target for target in LINK.findall(text)
        if not re.match(r'^[a-z][\w+.-]*:', target)
    ]


def anchors(text: str) -> Set[str]:
    """The anchors of a page's headings, as GitHub makes them: lower case,
    punctuation dropped, spaces to hyphens."""
    found = set()
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        heading = re.match(r'#+\s+(.*)', line)
        if heading and not in_fence:
            title = heading[1].strip().lower().replace('`', '')
            found.add(re.sub(r'[^\w\- ]', '', title).replace(' ', '-'))
    return found


def _link_problem(repo: str, page: str, target: str) -> Optional[str]:
    path, _, anchor = target.partition('#')
    resolved = osp.normpath(osp.join(osp.dirname(page),
                                     path)) if path else page
    full = osp.join(repo, resolved)
    if not osp.exists(full):
        return f'{page}: link to {target}, which does not exist'
    if anchor and resolved.endswith('.md'):
        with open(full, encoding='utf-8') as f:
            if anchor not in anchors(f.read()):
                return f'{page}: link to {target}: no such heading'
    return None


def _split_words(line: str) -> List[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=';&|')
    lexer.whitespace_split = True
    lexer.commenters = '#'
    return list(lexer)


def _logical_lines(code: str):
    """``(offset, line)`` with continuation lines joined; ``offset`` is the
    index of the line's first physical line."""
    start, parts = 0, []
    for i, physical in enumerate(code.splitlines()):
        if not parts:
            start = i
        if physical.endswith('\\'):
            parts.append(physical[:-1])
            continue
        yield start, ' '.join(parts + [physical])
        parts = []
    if parts:
        yield start, ' '.join(parts)


def commands(snippet: Snippet) -> List[Command]:
    """The commands of a shell snippet, one per line (after joining
    continuation lines) and separator."""
    result = []
    for offset, line in _logical_lines(snippet.code):
        if line.lstrip().startswith('$ '):  # a console prompt
            line = line.lstrip()[2:]
        line = re.sub(r'\s\d*>&\d+', ' ', line)  # 2>&1
        current: List[str] = []
        depth = 0
        for word in _split_words(line) + [';']:
            if word in SEPARATORS and depth == 0:
                if current:
                    result.append(_command(current, snippet.line + offset))
                current = []
                continue
            depth += word.count('[') - word.count(']')
            current.append(word)
    return result


def _is_python(word: str) -> bool:
    return re.fullmatch(r'python[\d.]*', osp.basename(word)) is not None


def _command(words: List[str], line: int) -> Command:
    rest = list(words)
    # Leading VAR=value assignments and wrappers with their options.
    while rest:
        if re.fullmatch(r'[A-Za-z_]\w*=\S*', rest[0]):
            rest.pop(0)
        elif rest[0] in WRAPPERS:
            rest.pop(0)
            while rest and (rest[0].startswith('-')
                            or rest[0].lstrip('-').isdigit()):
                rest.pop(0)
        else:
            break
    command = Command(line, words)
    if not rest:
        return command
    program, args = rest[0], rest[1:]
    if _is_python(program) or program in ('bash', 'sh'):
        # `$DIR/tools/x.py` is another checkout's script.
        if args and not args[0].startswith(('-', '$', '<')):
            command.script, args = args[0], args[1:]
    elif program.startswith('tools/') and program.endswith(('.py', '.sh')):
        command.script = program
    if command.script is not None:
        command.flags = [
            word.strip('[]').split('=')[0] for word in args
            if word.strip('[]').startswith('--')
        ]
    return command


def python_code_of(command: Command) -> Optional[str]:
    """The code of a ``python [options] -c CODE`` command."""
    words = command.words
    for i, word in enumerate(words):
        if _is_python(word):
            rest = words[i + 1:]
            if '-c' in rest[:-1]:
                return rest[rest.index('-c') + 1]
            return None
    return None


def string_constants(code: str) -> List[str]:
    return [
        node.value for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def repository_paths(words: List[str], top_level: Set[str]) -> List[str]:
    """The words that name files of the repository (see the module
    docstring), without brackets, ``::test`` ids and ``=`` prefixes."""
    paths = []
    for word in words:
        word = word.strip('[]\'",()').split('=')[-1].split('::')[0]
        if not word or '<' in word or '$' in word or '://' in word:
            continue
        if word.split('/')[0] in top_level:
            paths.append(word.rstrip('/'))
    return paths


def missing(repo: str, path: str) -> bool:
    """True when ``path`` (possibly a glob) names nothing in ``repo``."""
    return not glob.glob(osp.join(repo, path))


def help_flags(help_text: str) -> Set[str]:
    """The option strings of an argparse ``--help`` text, read from its
    option list (lines such as ``  --work-dir WORK_DIR  help...``)."""
    flags = set()
    for line in help_text.splitlines():
        stripped = line.strip()
        if stripped.startswith('-'):
            invocation = stripped.split('  ')[0]
            flags.update(USAGE_FLAG.findall(invocation))
    return flags


def forwarded_tool(script_text: str) -> Optional[str]:
    """The Python tool a shell script hands its extra arguments to (the
    last ``<name>.py`` it mentions), relative to tools/."""
    names = re.findall(r'([\w/]+\.py)\b', script_text)
    return names[-1].split('tools/')[-1].lstrip('/') if names else None


def accepted_flags(repo: str, script: str, run_help,
                   cache: Dict[str, Set[str]]) -> Set[str]:
    """Every ``--flag`` the script accepts. A Python tool's come from its
    ``--help`` (``run_help(path) -> text``); a shell script accepts the
    flags it names itself and those of the Python tool it forwards to."""
    if script in cache:
        return cache[script]
    path = osp.join(repo, script)
    if script.endswith('.py'):
        flags = help_flags(run_help(path))
    else:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        flags = set(USAGE_FLAG.findall(text))
        tool = forwarded_tool(text)
        if tool and osp.isfile(osp.join(repo, 'tools', tool)):
            flags |= accepted_flags(repo, osp.join('tools', tool), run_help,
                                    cache)
    cache[script] = flags
    return flags


def problems(repo: str, run_help=None) -> List[str]:
    """Everything wrong with the documentation of ``repo``, one line each.

    ``run_help(path)`` returns a Python tool's ``--help`` text; without it,
    flags are not checked."""
    top_level = tracked_top_level(repo)
    found = []
    cache: Dict[str, Set[str]] = {}
    for page in doc_pages(repo):
        with open(osp.join(repo, page), encoding='utf-8') as f:
            text = f.read()
        for target in links(text):
            problem = _link_problem(repo, page, target)
            if problem:
                found.append(problem)
        for snippet in snippets(page, text):
            where = f'{page}:{snippet.line}'
            if snippet.kind == 'python':
                found += _python_problems(repo, where, snippet.code, top_level)
                continue
            for command in commands(snippet):
                found += _command_problems(repo, f'{page}:{command.line}',
                                           command, top_level, run_help, cache)
    return found


# A code identifier: a dotted name, optionally called, with an underscore,
# a dot or an inner capital, so that plain words (``xxs``, ``fp32``) are not.
IDENTIFIER = re.compile(r'^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\(\))?$')
FILE_NAME = re.compile(
    r'\.(py|sh|md|yml|yaml|json|csv|txt|pth|onnx|xml|png|tmp|log|whl)$')
LIBRARIES = ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain',
             'mmdeploy', 'openvino', 'onnxruntime', 'nncf', 'numpy')


def code_words(repo: str) -> Set[str]:
    """Every word of the project's Python and shell files, and Python's
    builtins."""
    import builtins
    words: Set[str] = set(dir(builtins))
    for folder in ('mmefficientmod', 'tools', 'configs', 'tests'):
        for ext in ('py', 'sh'):
            for path in glob.glob(
                    osp.join(repo, folder, '**', f'*.{ext}'), recursive=True):
                with open(path, encoding='utf-8') as f:
                    words |= set(re.findall(r'\w+', f.read()))
    return words


def resolves(name: str) -> bool:
    """Whether the dotted ``name`` is a module or an attribute path."""
    import importlib
    parts = name.split('.')
    for split in range(len(parts), 0, -1):
        try:
            found = importlib.import_module('.'.join(parts[:split]))
        except Exception:
            continue
        try:
            for part in parts[split:]:
                found = getattr(found, part)
        except AttributeError:
            return False
        return True
    return False


def unknown_identifiers(repo: str) -> List[str]:
    """The code identifiers of the documentation that the code lacks."""
    words, found = code_words(repo), []
    for page in doc_pages(repo):
        with open(osp.join(repo, page), encoding='utf-8') as f:
            text = FENCED_BLOCK.sub('', f.read())
        for span in INLINE_CODE.findall(text):
            match = IDENTIFIER.match(span.strip())
            name = match.group(1) if match else ''
            # Not identifiers: plain words, file names, name fragments.
            if (not re.search(r'_|\.|[a-z][A-Z]', name)
                    or FILE_NAME.search(name) or name[0] == '_'
                    or name[-1] == '_'):
                continue
            if name.split('.')[0] in LIBRARIES + ('mmefficientmod', ):
                known = resolves(name)
            else:
                known = all(part in words for part in name.split('.')) or \
                    resolves(name)
            if not known:
                found.append(f'{page}: `{span}` is not in the code')
    return found


def compiles(code: str, where: str) -> Optional[SyntaxError]:
    """None when ``code`` compiles as a module, or as a function body (an
    excerpt of a method that ends with ``return``); else the error."""
    try:
        compile(code, where, 'exec')
        return None
    except SyntaxError as error:
        if 'outside function' not in str(error.msg):
            return error
        try:
            compile('def excerpt():\n' + textwrap.indent(code, '    '), where,
                    'exec')
            return None
        except SyntaxError:
            return error


def _python_problems(repo, where, code, top_level):
    error = compiles(code, where)
    if error is not None:
        return [
            f'{where}: Python does not compile: {error.msg} '
            f'(line {error.lineno})'
        ]
    return [
        f'{where}: {path} does not exist'
        for path in repository_paths(string_constants(code), top_level)
        if missing(repo, path)
    ]


def _command_problems(repo, where, command, top_level, run_help, cache):
    found = []
    code = python_code_of(command)
    if code is not None:
        found += _python_problems(repo, where, code, top_level)
    paths = repository_paths(command.words, top_level)
    if command.script is not None and command.script not in paths:
        paths.insert(0, command.script)
    found += [
        f'{where}: {path} does not exist' for path in paths
        if missing(repo, path)
    ]
    script = command.script
    if (script is None or run_help is None or missing(repo, script)
            or not script.startswith('tools/')):
        return found
    accepted = accepted_flags(repo, script, run_help, cache)
    found += [
        f'{where}: {script} does not accept {flag}' for flag in command.flags
        if flag not in accepted
    ]
    return found
