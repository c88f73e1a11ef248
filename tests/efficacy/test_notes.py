"""The paired tests' caveats as readers read them: pointers to fields become table columns."""

from __future__ import annotations

from celltrial.efficacy.notes import paired_notes


def test_pointers_become_columns_and_the_programmers_note_goes():
    caveats = [
        "3 of 3 comparisons have too few pairs to reach p < 0.05 (see min_p_value)",
        "some intervals fall short of the nominal level (see ci_level)",
        "per-comparison caveats are in comparisons[(test, visit)].caveats",
        "n = 5: read the individual trajectories",
    ]
    assert paired_notes(caveats) == [
        "3 of 3 comparisons have too few pairs to reach p < 0.05 (column 'smallest possible p')",
        "some intervals fall short of the nominal level (the achieved level is given beside each "
        "interval)",
        "n = 5: read the individual trajectories",
    ]
