"""Stop strings across streamed pieces: never emitted, partial matches held back."""
from __future__ import annotations

import pytest

from llamalite.stopping import StopStrings


def run(stops, pieces):
    s = StopStrings(stops)
    out, stopped = [], False
    for p in pieces:
        text, stopped = s.push(p)
        out.append(text)
        if stopped:
            break
    if not stopped:
        out.append(s.flush())
    return out, stopped


def test_stop_spanning_pieces_is_never_emitted():
    out, stopped = run(["###"], ["ab#", "#", "#cd"])
    assert stopped and "".join(out) == "ab"
    assert out[0] == "ab"            # "#" held back as a possible start


def test_false_alarm_is_released():
    out, stopped = run(["###"], ["ab#", "#x", "y"])
    assert not stopped and "".join(out) == "ab##xy"
    assert out[:2] == ["ab", "##x"]


def test_earliest_of_several_stops_wins_and_tail_flushes():
    out, stopped = run(["END", "\n\n"], ["one\n\ntwo END"])
    assert stopped and "".join(out) == "one"
    out, stopped = run(["END"], ["the E"])
    assert not stopped and out == ["the ", "E"]


@pytest.mark.parametrize("stops", [[], [""]])
def test_no_stops_passes_through(stops):
    assert run(stops, ["a", "b"]) == (["a", "b", ""], False)


def test_stop_overlapping_its_own_prefix():
    out, stopped = run(["aab"], ["a", "a", "a", "b"])
    assert stopped and "".join(out) == "a"
