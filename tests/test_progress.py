"""Progress output: tqdm on a terminal, plain lines (no carriage returns) in a log."""
import io

from scratchgen.progress import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_plain_lines_without_carriage_returns():
    log = io.StringIO()
    assert list(progress(range(5), total=5, desc="sampling", every=0.0, stream=log)) == list(range(5))
    text = log.getvalue()
    assert "\r" not in text and "sampling: 1/5 (20%)" in text and "sampling: 5/5 done" in text


def test_a_quick_loop_says_nothing_in_a_log():
    log = io.StringIO()
    list(progress(range(3), total=3, desc="x", every=60.0, stream=log))
    assert log.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar_and_disabled_means_silent():
    term = _Terminal()
    bar = progress(range(3), total=3, desc="epoch", stream=term)
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert "epoch" in term.getvalue()
    quiet = io.StringIO()
    assert list(progress(range(3), enabled=False, stream=quiet)) == [0, 1, 2] and quiet.getvalue() == ""
