"""The efficacy analysis's caveats as its readers read them (report and command line alike)."""

from __future__ import annotations

from collections.abc import Iterable


def paired_notes(caveats: Iterable[str]) -> list[str]:
    """The paired tests' caveats for a reader: the analysis's pointers to its own fields become
    the columns of the report's and the command line's tables, and the note for programmers
    (where per-comparison caveats live) goes. Other caveats pass unchanged."""
    pointers = {
        "(see min_p_value)": "(column 'smallest possible p')",
        "(see ci_level)": "(the achieved level is given beside each interval)",
    }
    notes = []
    for line in caveats:
        if "comparisons[" in line:
            continue
        for pointer, words in pointers.items():
            line = line.replace(pointer, words)
        notes.append(line)
    return notes
