"""Property tests for the `nvidia-smi topo -m` reader, driven by the real corpus.

Two kinds of claims:

* robustness: whatever copy-and-paste does to a real output (cells deleted,
  duplicated or fused, whitespace changed, lines dropped, duplicated or added,
  the text cut anywhere, ``#`` prefixes, ANSI escapes), :func:`smi_parser.parse`
  returns a symmetric :class:`Topology` or raises :class:`TopologyParseError`
  naming a real line; never another exception;
* invariance: changes that keep every cell boundary (other runs of blanks or
  tabs, ANSI escapes, ``#`` prefixes, a banner, a markdown indent) give the
  same answer as the original text.

Budgets are small (a few hundred examples in all, ``deadline=None``) so the
file runs in a few seconds on two cores.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labeler.topology import smi_parser
from labeler.topology.errors import TopologyParseError
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "topo-corpus"
TEXTS = {p.stem: p.read_text() for p in sorted(CORPUS.glob("*.txt"))}
STEMS = sorted(TEXTS)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ANSI = [
    "\x1b[1m", "\x1b[0m", "\x1b[1;32m", "\x1b[38;5;208m", "\x1b[K", "\x1b]8;;https://x\x1b\\",
    "[4m", "[0m", "[1;32m", "^[[4m",  # what is left when the ESC byte is lost, or shown as ^[ (cat -v)
]


def outcome(text: str) -> Topology | TopologyParseError:
    """Parse, and check the two things any outcome must satisfy."""
    try:
        topo = smi_parser.parse(text)
    except TopologyParseError as err:
        lines = text.split("\n")
        if err.line is not None:
            assert 1 <= err.line <= len(lines)
            assert err.text == lines[err.line - 1].rstrip("\r")
        return err
    n = len(topo.gpus) + len(topo.nics)
    for i in range(n):
        for j in range(n):
            assert topo.links[i][j] == topo.links[j][i]
            link = topo.links[i][j]
            if link is not None and link.level is LinkLevel.NVLINK:
                assert i < len(topo.gpus) and j < len(topo.gpus)
        assert topo.links[i][i] is not None and topo.links[i][i].level is LinkLevel.SELF
    return topo


def same(a: Topology | TopologyParseError, b: Topology | TopologyParseError, *, line_shift: int = 0) -> None:
    if isinstance(a, TopologyParseError):
        assert isinstance(b, TopologyParseError), f"{a} became a topology"
        assert (a.line is None and b.line is None) or (a.line is not None and b.line == a.line + line_shift)
        assert a.reason == b.reason
    else:
        assert isinstance(b, Topology), f"became an error: {b}"
        assert (a.gpus, a.nics, a.links, a.warnings) == (b.gpus, b.nics, b.links, b.warnings)


# -- mutations ------------------------------------------------------------------------------
Mutation = Callable[[str, st.DataObject], str]


def _cells(text: str) -> list[re.Match[str]]:
    return list(re.finditer(r"\S+", text))


def delete_cell(text: str, data: st.DataObject) -> str:
    cells = _cells(text)
    if not cells:
        return text
    m = cells[data.draw(st.integers(0, len(cells) - 1))]
    return text[: m.start()] + text[m.end() :]


def duplicate_cell(text: str, data: st.DataObject) -> str:
    cells = _cells(text)
    if not cells:
        return text
    m = cells[data.draw(st.integers(0, len(cells) - 1))]
    return text[: m.end()] + " " + m.group() + text[m.end() :]


def fuse_cells(text: str, data: st.DataObject) -> str:
    gaps = list(re.finditer(r"(?<=\S)[ \t]+(?=\S)", text))
    if not gaps:
        return text
    m = gaps[data.draw(st.integers(0, len(gaps) - 1))]
    return text[: m.start()] + text[m.end() :]


def swap_blanks(text: str, data: st.DataObject) -> str:
    """Tabs to spaces and back, other widths: may move cells across columns (that is the point)."""
    choice = data.draw(st.sampled_from(["\t", " ", "  ", "        ", " \t"]))
    return re.sub(r"[ \t]+", lambda _m: choice, text) if data.draw(st.booleans()) else text.replace("\t", choice)


def insert_blank_line(text: str, data: st.DataObject) -> str:
    lines = text.split("\n")
    k = data.draw(st.integers(0, len(lines)))
    lines.insert(k, data.draw(st.sampled_from(["", "    ", "\t"])))
    return "\n".join(lines)


def drop_line(text: str, data: st.DataObject) -> str:
    lines = text.split("\n")
    del lines[data.draw(st.integers(0, len(lines) - 1))]
    return "\n".join(lines)


def duplicate_line(text: str, data: st.DataObject) -> str:
    lines = text.split("\n")
    k = data.draw(st.integers(0, len(lines) - 1))
    lines.insert(k, lines[k])
    return "\n".join(lines)


def truncate(text: str, data: st.DataObject) -> str:
    return text[: data.draw(st.integers(0, len(text)))]


def comment_prefix(text: str, data: st.DataObject) -> str:
    return "\n".join("#" + line for line in text.split("\n"))


def insert_ansi(text: str, data: st.DataObject, count: int = 1) -> str:
    """Escapes at ``count`` places of the text as it was (never inside another escape)."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), min_size=count, max_size=count)))
    out, last = [], 0
    for k in cuts:
        out += [text[last:k], data.draw(st.sampled_from(ANSI))]
        last = k
    return "".join([*out, text[last:]])


def collapse(text: str, data: st.DataObject) -> str:
    return re.sub(r"\s+", " ", text)


MUTATIONS: list[Mutation] = [
    delete_cell,
    duplicate_cell,
    fuse_cells,
    swap_blanks,
    insert_blank_line,
    drop_line,
    duplicate_line,
    truncate,
    comment_prefix,
    insert_ansi,
    collapse,
]


@SETTINGS
@given(stem=st.sampled_from(STEMS), data=st.data())
def test_damaged_text_gives_topology_or_parse_error(stem: str, data: st.DataObject) -> None:
    text = TEXTS[stem]
    for mutation in data.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4)):
        text = mutation(text, data)
    outcome(text)


@settings(SETTINGS, max_examples=150)
@given(stem=st.sampled_from(STEMS), data=st.data())
def test_truncation_anywhere(stem: str, data: st.DataObject) -> None:
    """Cut anywhere: a topology only if nothing involving a GPU was lost, else an error."""
    text = TEXTS[stem]
    full = outcome(text)
    cut = truncate(text, data)
    got = outcome(cut)
    if isinstance(got, Topology) and isinstance(full, Topology):
        # Every link the cut text still asserts is the one of the whole text (nothing invented).
        assert [g.index for g in got.gpus] == [g.index for g in full.gpus]
        for i, row in enumerate(got.links[: len(got.gpus)]):
            for j, link in enumerate(row[: len(got.gpus)]):
                assert link == full.links[i][j]
        for mine, whole in zip(got.gpus, full.gpus, strict=True):
            for attr in ("cpu_affinity", "numa_affinity", "gpu_numa_id"):
                # 018: the cut can remove the row whose disagreement made the whole text drop a value
                known = getattr(whole, attr)
                assert known is None or getattr(mine, attr) in (None, known)


def _regap(text: str, data: st.DataObject) -> str:
    """Replace every gap that is a cell boundary (a tab, or two or more blanks) by another such gap."""
    runs = ["  ", "   ", "\t", "\t\t", "      ", " \t ", "        ", "\xa0\xa0"]
    picks = data.draw(st.lists(st.sampled_from(runs), min_size=1, max_size=8))
    counter = iter(range(10**9))
    return re.sub(r"\t[ \t]*|[ \t]{2,}", lambda _m: picks[next(counter) % len(picks)], text)


@SETTINGS
@given(stem=st.sampled_from(STEMS), data=st.data())
def test_gap_widths_do_not_matter(stem: str, data: st.DataObject) -> None:
    text = TEXTS[stem]
    same(outcome(text), outcome(_regap(text, data)))


@settings(SETTINGS, max_examples=150)
@given(stem=st.sampled_from(STEMS), data=st.data())
def test_ansi_comments_banner_and_indent_do_not_matter(stem: str, data: st.DataObject) -> None:
    text = TEXTS[stem]
    noisy = insert_ansi(text, data, data.draw(st.integers(1, 6)))
    if data.draw(st.booleans()):
        noisy = comment_prefix(noisy, data)
    if data.draw(st.booleans()):
        noisy = "\n".join("    " + line for line in noisy.split("\n"))
    banner = data.draw(
        st.sampled_from(["", " nvidia-smi topo -m\n", "======MATRIX======\n", "$ nvidia-smi topo -m\n\n"])
    )
    same(outcome(text), outcome(banner + noisy), line_shift=banner.count("\n"))


DAMAGE: list[Mutation] = [
    delete_cell,
    duplicate_cell,
    fuse_cells,
    swap_blanks,
    insert_blank_line,
    drop_line,
    duplicate_line,
    truncate,
]


@SETTINGS
@given(stem=st.sampled_from(STEMS), mutation=st.sampled_from(DAMAGE), data=st.data())
def test_damage_never_invents_a_value(stem: str, mutation: Mutation, data: st.DataObject) -> None:
    """One piece of damage: either an error, or a topology whose every known value is the original's.

    "Original" is the reader's result on the undamaged text (itself checked
    against the corpus by the goldens). A value the original leaves unknown may
    become known when damage removes the evidence that made it doubtful (018
    cut before GPU7), so only values the original knows are compared.
    """
    full = outcome(TEXTS[stem])
    got = outcome(mutation(TEXTS[stem], data))
    if not (isinstance(full, Topology) and isinstance(got, Topology)):
        return
    full_names = [f"GPU{g.index}" for g in full.gpus] + [n.column for n in full.nics]
    got_names = [f"GPU{g.index}" for g in got.gpus] + [n.column for n in got.nics]
    assert set(got_names) <= set(full_names)
    for i, a in enumerate(got_names):
        for j, b in enumerate(got_names):
            if got.links[i][j] is not None:
                assert got.links[i][j] == full.links[full_names.index(a)][full_names.index(b)], (a, b)
    whole = {g.index: g for g in full.gpus}
    for g in got.gpus:
        for attr in ("cpu_affinity", "numa_affinity", "gpu_numa_id"):
            known = getattr(whole[g.index], attr)
            assert known is None or getattr(g, attr) in (None, known), (g.index, attr)
    devices = {n.column: n.device for n in full.nics}
    for n in got.nics:
        assert n.device is None or n.device == devices[n.column]
