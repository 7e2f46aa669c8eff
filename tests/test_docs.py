"""The manual's links: every relative link, image and ``#anchor`` in README.md and docs/*.md names a file or folder
of the repository (one that git does not ignore, so it is on GitHub too) and a heading of the Markdown file it
points into, under GitHub's rules for heading anchors. Standard library only, no network: absolute URLs are not
followed."""

from __future__ import annotations

import bisect
import difflib
import html
import importlib.util
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import REPO

#: The manual: the README and every page under docs/ (docs/kernels.md and docs/config.md are generated).
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
#: Backtick strings of equal length around a code span (no longer run touches either end), within a paragraph.
_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)
#: An inline link or image's ``](destination "title")``: its text may span lines and hold code, so only its end
#: is matched; the destination may be in angle brackets or hold balanced parentheses.
_INLINE = re.compile(
    r"(?<!\\)\]\([ \t]*(<[^<>\n]*>|(?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?[ \t]*\)")
#: A reference definition ``[label]: destination``.
_DEFINITION = re.compile(r"^ {0,3}\[(?:[^\]\\]|\\.)+\]:[ \t]*(<[^<>\n]*>|\S+)", re.MULTILINE)
_HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')", re.IGNORECASE)
_HTML_ID = re.compile(r"<[a-z][^>]*?\b(?:id|name)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _masked(text: str) -> tuple[str, list[str | None]]:
    """The text with fenced and indented code blocks blanked (line breaks kept, so offsets keep their line), and
    the lines of the text that are not in a code block (code-block lines are None)."""
    lines = text.split("\n")
    prose: list[str | None] = []
    fence: tuple[str, int] | None = None
    in_list = previous_blank = indented_code = False
    for line in lines:
        match = _FENCE.match(line)
        if fence is not None:
            char, length = fence
            if match and match["fence"][0] == char and len(match["fence"]) >= length and not match["info"].strip():
                fence = None
            prose.append(None)
            continue
        if match and not (match["fence"][0] == "`" and "`" in match["info"]):
            fence = (match["fence"][0], len(match["fence"]))
            prose.append(None)
            continue
        blank = not line.strip()
        indent = len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())
        # An indented code block starts after a blank line, outside a list, and runs while lines stay indented.
        if not blank and indent >= 4 and not in_list and (previous_blank or indented_code):
            indented_code = True
            prose.append(None)
            continue
        if not blank:
            indented_code = False
            if _LIST_ITEM.match(line):
                in_list = True
            elif indent == 0 and previous_blank:
                in_list = False
        previous_blank = blank
        prose.append(None if indented_code else line)
    masked = "\n".join("" if line is None else line for line in prose)
    # Code spans keep their length and line breaks, their content becomes spaces: links in them are not links.
    masked = _CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m[0]), masked)
    return masked, prose


def _plain(heading: str) -> str:
    """A heading's text as GitHub renders it: code spans' content kept, links by their text, images, HTML tags and
    emphasis markers dropped, escapes and entities resolved."""
    parts = re.split(r"((?<!`)`+(?!`).+?(?<!`)`+(?!`))", heading)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a code span: its content, verbatim
            code = part.strip("`")
            out.append(code[1:-1] if len(code) > 2 and code[0] == code[-1] == " " and code.strip() else code)
            continue
        part = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", part)
        part = re.sub(r"\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])", r"\1", part)
        part = re.sub(r"<[^>]+>", "", part)
        part = re.sub(r"(?<![^\W_])(_{1,3})(?=\S)(.+?)(?<=\S)\1(?![^\W_])", r"\2", part)
        part = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", part)
        out.append(html.unescape(part))
    return "".join(out).strip()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger without the duplicate suffix): lowercase, drop every character
    that is not a letter, mark, number, connector (``_``), space or hyphen, then spaces become hyphens."""
    text = _plain(heading).lower()
    kept = "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LMN"
                   or unicodedata.category(c) == "Pc")
    return kept.replace(" ", "-")


def anchors(text: str) -> list[str]:
    """Every anchor of a Markdown text, in order: its headings' slugs (ATX and setext; a repeated slug gets -1, -2,
    ... as on GitHub) and the ids and names of its HTML elements. Headings in code blocks are not headings."""
    masked, prose = _masked(text)
    headings = []
    for i, line in enumerate(prose):
        if line is None:
            continue
        if match := _ATX.match(line):
            headings.append(match[2] or "")
        elif _SETEXT.match(line) and i and prose[i - 1] is not None and prose[i - 1].strip():
            above = prose[i - 1]
            if not (_ATX.match(above) or _LIST_ITEM.match(above) or _SETEXT.match(above)
                    or above.lstrip().startswith(("|", ">"))):
                start = i - 1
                while start and prose[start - 1] is not None and prose[start - 1].strip():
                    start -= 1
                headings.append(" ".join(line.strip() for line in prose[start:i]))
    seen: dict[str, int] = {}
    found = []
    for heading in headings:
        base = candidate = slug(heading)
        while candidate in seen:
            seen[base] += 1
            candidate = f"{base}-{seen[base]}"
        seen[candidate] = 0
        found.append(candidate)
    found += [m[1] if m[1] is not None else m[2] for m in _HTML_ID.finditer(masked)]
    return found


def links(text: str) -> list[tuple[int, str]]:
    """Every link target of a Markdown text with its line number: inline links and images, reference definitions
    and HTML ``href``/``src`` attributes, none of them in a code block or code span."""
    masked, _ = _masked(text)
    breaks = [i for i, c in enumerate(masked) if c == "\n"]
    found = []
    for pattern in (_INLINE, _DEFINITION):
        for match in pattern.finditer(masked):
            target = match[1]
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            found.append((match.start(1), re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", target)))
    for match in _HTML_LINK.finditer(masked):
        found.append((match.start(), html.unescape(match[1] if match[1] is not None else match[2])))
    return sorted((bisect.bisect_left(breaks, offset) + 1, target) for offset, target in found if target)


def _ignored(paths: list[Path], root: Path) -> set[Path]:
    """Those of the paths that git ignores (and does not track): they are not on GitHub. Empty without git."""
    if not paths or shutil.which("git") is None or not (root / ".git").exists():
        return set()
    result = subprocess.run(["git", "-C", str(root), "check-ignore", "--stdin", "-z"], capture_output=True,
                            input="\0".join(str(p) for p in paths) + "\0", text=True, check=False)
    return {Path(p) for p in result.stdout.split("\0") if p} if result.returncode in (0, 1) else set()


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    """What is wrong with each relative link of a Markdown page: ``line N: target: why``."""
    problems: list[tuple[int, str, str]] = []
    cache: dict[Path, list[str]] = {}
    exists: list[tuple[int, str, Path]] = []
    for line, target in links(page.read_text(encoding="utf-8")):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # an absolute URL (http:, https:, mailto:, ...): not followed
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part.split("?", 1)[0])
        if not path_part:
            file = page
        elif path_part.startswith("/"):  # GitHub: relative to the repository's root
            file = root / path_part.lstrip("/")
        else:
            file = page.parent / path_part
        file = file.resolve()
        if not file.is_relative_to(root.resolve()):
            problems.append((line, target, f"{file} is outside the repository"))
            continue
        if not file.exists():
            problems.append((line, target, f"no file or folder {file.relative_to(root.resolve())}"))
            continue
        exists.append((line, target, file))
        anchor = unquote(anchor)
        if not anchor or file.suffix.lower() not in (".md", ".markdown") or not file.is_file():
            continue
        if file not in cache:
            cache[file] = anchors(file.read_text(encoding="utf-8"))
        if anchor not in cache[file]:
            near = difflib.get_close_matches(anchor, cache[file], n=3, cutoff=0.5)
            hint = f"; nearest: {', '.join('#' + n for n in near)}" if near else ""
            problems.append((line, target, f"no heading #{anchor} in {file.relative_to(root.resolve())}{hint}"))
    ignored = _ignored([file for _, _, file in exists], root.resolve())
    problems += [(line, target, "git ignores it, so it is not on GitHub") for line, target, file in exists
                 if file in ignored]
    return [f"line {line}: {target}: {why}" for line, target, why in sorted(problems)]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page):
    """Each relative link or image of the page names an existing file or folder that git does not ignore, and each
    ``#anchor`` a heading of the Markdown file it points into, slugged as GitHub does: a renamed heading, a moved
    benchmark record or a deleted example otherwise leaves the manual pointing at nothing, silently. Every broken
    link of the page is in the one message."""
    problems = broken_links(page)
    assert not problems, f"{page.relative_to(REPO)} has {len(problems)} broken link(s):\n" + "\n".join(problems)


@pytest.mark.parametrize(("heading", "expected"), [
    ("The reference's kernel and trajectory length (CPU, 2026-11-28)",
     "the-references-kernel-and-trajectory-length-cpu-2026-11-28"),
    ("The test suite (issue #15)", "the-test-suite-issue-15"),
    ("`results/data/{dataset}.h5` (rule `preprocess`)", "resultsdatadataseth5-rule-preprocess"),
    ("Which sampler? The sampler zoo on real MNIST, one GPU", "which-sampler-the-sampler-zoo-on-real-mnist-one-gpu"),
    ("`sghmc_persistent`", "sghmc_persistent"),
    ("Baselines: MAP, deep ensembles and Laplace", "baselines-map-deep-ensembles-and-laplace"),
    ("C++ & [links](x.md) — *emphasis* and __bold__", "c--links--emphasis-and-bold"),
    ("Ünïcode Größe 2.0", "ünïcode-größe-20"),
])
def test_slugs_follow_githubs_rules(heading, expected):
    """The slug is GitHub's: punctuation (``.,():'`/+&*``) dropped, Unicode letters, digits, ``_`` and ``-`` kept,
    spaces to hyphens, link and emphasis markup reduced to its text; else the link check passes broken anchors or
    fails good ones."""
    assert slug(heading) == expected


def test_the_check_finds_what_is_broken_and_ignores_code(tmp_path):
    """A missing file, a missing anchor and a duplicate heading's second slug are caught or accepted as on GitHub;
    links in fenced blocks and code spans, and absolute URLs, are not checked: the link check is not vacuous."""
    (tmp_path / "other.md").write_text("# Top\n\n## Part\n\n## Part\n\nSetext heading\n--------------\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#part-1) [ok](other.md#setext-heading) [ok](#page) [ok](<other.md>)\n"
        "![missing image](fig.png) [no anchor](other.md#part-2) [self](#nowhere)\n"
        "`[code](gone.md)` and [web](https://example.org/x#y)\n\n```\n[fenced](gone.md)\n# Not a heading\n```\n"
        "[ref]: other.md#top\n[badref]: gone/\n")
    assert broken_links(page, tmp_path) == [
        "line 4: #nowhere: no heading #nowhere in page.md",
        "line 4: fig.png: no file or folder fig.png",
        "line 4: other.md#part-2: no heading #part-2 in other.md; nearest: #part-1, #part",
        "line 12: gone/: no file or folder gone",
    ]


def _load_tool(name: str):
    """A module of tools/ (scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rulegraph = _load_tool("rulegraph")


def _report_sections() -> dict[str, tuple[int, str]]:
    """Every file the rules put in the HTML report, by the path pattern docs/output.md gives it, with its
    report category's number and name (workflow/rules/report.smk, as snakefmt formats it)."""
    rules = (REPO / "workflow/rules/report.smk").read_text()
    found = re.findall(r'report\(\s*f?"([^"]+)",\s*caption="[^"]+",\s*category="(\d+)\. ([^"]+)"', rules)
    assert len(found) >= 20, "the report() calls of report.smk are no longer where this test looks"
    return {path.replace("{{", "{").replace("}}", "}").replace("{FMT}", "{format}"): (int(number), name)
            for path, number, name in found}


@pytest.mark.parametrize("heading", ["## Report tables", "## Figures", "## Table columns"])
def test_output_md_lists_the_report_in_its_order(heading):
    """docs/output.md's tables of report files name every one the report shows, in the report's category
    order, and say which section each is in (#38 item 9)."""
    sections = _report_sections()
    text = (REPO / "docs/output.md").read_text()
    first = text.index("\n|", text.index(f"\n{heading}")) + 1
    table = text[first:text.index("\n\n", first)]
    rows = [(re.search(r"`(results/[^`]+)`", row).group(1), row) for row in table.splitlines()[2:]]
    listed = [path for path, _ in rows]
    kind = "figures" if "Figures" in heading else "tables"
    assert set(listed) == {p for p in sections if p.startswith(f"results/{kind}/")}, heading
    order = [sections[path][0] for path in listed]
    assert order == sorted(order), f"{heading}: not in the report's category order: {listed}"
    if heading != "## Table columns":
        for path, row in rows:
            number, name = sections[path]
            assert row.startswith(f"| {number}. {name} |"), (path, row[:60])


def test_the_readmes_rule_graph_is_snakemakes():
    """README.md's Mermaid rule graph is what `make docs` makes of `snakemake --rulegraph` today: a rule added,
    removed or rewired makes it stale."""
    out = rulegraph.snakemake_graph()
    readme = (REPO / "README.md").read_text()
    assert rulegraph.replace_block(readme, rulegraph.flowchart(out)) == readme, "stale: run make docs"
    assert "    gather --> agreement" in readme and " all" not in rulegraph.flowchart(out)


def test_the_rule_graph_filter_names_rules_and_drops_the_target_rule():
    mermaid = "flowchart TB\n\tid0[all]\n\tid1[warmup]\n\tid2[sample]\n\tstyle id0 fill:#D97557\n" \
              "\tid1 --> id0\n\tid1 --> id2\n\tid1 --> id2\n\tid2 --> id0\n"
    assert rulegraph.flowchart(mermaid) == "```mermaid\nflowchart TB\n    warmup --> sample\n```"
    with pytest.raises(ValueError, match="no rule graph"):
        rulegraph.flowchart("Building DAG of jobs...")

