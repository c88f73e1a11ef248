"""The import's code as it was before issue 26's ingest speed work, kept as the reference that
tests/ingest/test_results_unchanged.py compares the faster code with (verbatim, but for the
module references): the duplicate check across a file's chunks, the validation's steps (which
read the results' numbers twice), the reporting-limit check and the unit conversion; and, from
the second round, the length, timing, specimen and reference-limit checks, the subject ids of the rows to store and the SQLite insert, the reading of times, the reporting-limit
detection (counts by hashing) and the subject-code check; from the third round, the stored rows'
specimens, their flags, the subject check, the reading of times (with the old time reader), the long reader's
raw frame and the NUL check of a CSV file."""

# ruff: noqa

from __future__ import annotations

import numpy as np
import pandas as pd

from celltrial.ingest import values as V
from celltrial.ingest.alignment import (
    MAX_SUBJECT_CODE,
    MIN_DECIMAL_CODES,
    MISPLACED_SHARE,
    _SHOWN,
    code_kind,
)
from celltrial.ingest.limits import MIN_RESULTS, _spike
from celltrial.ingest.frame import strip_text
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.times import (
    _DATE,
    _OFFSET,
    DateOrder,
    _in_date_order,
    _in_range,
    _naive_in_range,
    _to_naive,
    current_date_order,
)
from celltrial.ingest.storage import (
    _BOUND_COLUMNS,
    _GROUP_COLUMNS,
    _MAX_TEXT,
    _floats,
    _insert_rows,
    _literal,
    _same,
    _sqlite_times,
    _update,
    _utc_micros,
)
from celltrial.ingest.validate import (
    _BASIS,
    _NO_UNIT,
    BLOOD_SPECIMENS,
    MAX_TEXT,
    _cell_text,
)
from celltrial.units import convert, explain_unconvertible, normalize_unit
from celltrial.ingest.values import EMPTY, LIMIT_ONLY, OK, _parse_text, _text


def parse_values(raw: pd.Series) -> pd.DataFrame:
    """Columns ``value`` (float), ``qualifier`` ("" or <, <=, >, >=) and ``status`` per cell.

    Numeric input is taken as is (NaN → empty). Index is kept.
    """
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.astype("float64")
        finite = np.isfinite(values.to_numpy())
        status = np.where(values.isna(), EMPTY, np.where(finite, OK, LIMIT_ONLY))
        qualifier = np.where(values.to_numpy() == np.inf, ">", np.where(values == -np.inf, "<", ""))
        out_values = values.where(finite)
        return pd.DataFrame(
            {"value": out_values, "qualifier": qualifier, "status": status}, index=raw.index
        )
    if raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype):
        try:
            quick = pd.to_numeric(raw, errors="coerce")  # plain numbers at C speed
        except OverflowError:  # a whole number beyond what a float holds (read as a Python int)
            return _parse_text(raw.map(_text, na_action="ignore"))
        plain = np.isfinite(quick.to_numpy(dtype=float))
        if plain.all():
            return pd.DataFrame(
                {"value": quick.astype("float64"), "qualifier": "", "status": OK},
                index=raw.index,
            )
        if plain.any():
            rest = _parse_text(raw[~plain])
            out = pd.DataFrame(
                {"value": quick.astype("float64"), "qualifier": "", "status": OK},
                index=raw.index,
            ).astype({"qualifier": object, "status": object})
            out.loc[rest.index, ["value", "qualifier", "status"]] = rest
            return out
    return _parse_text(raw)


def _within_file(self, frame: pd.DataFrame) -> pd.DataFrame:
    """Drop results repeated from an earlier chunk of the same file (see class doc).

    Results are matched on integer keys: subject id and test code in one, the time in UTC
    microseconds in the other (a merge on text and zoned times spends its time hashing)."""
    tests = frame["test"].astype(str)
    for name in tests.unique():
        self._test_codes.setdefault(name, len(self._test_codes))
    keys = pd.DataFrame(
        {
            "_subject_test": (frame["subject_id"].to_numpy(dtype="int64") << 20)
            + tests.map(self._test_codes).to_numpy(dtype="int64"),
            "_time": _utc_micros(frame["time"]),
        },
        index=frame.index,
    )
    for column in ("value", "qualifier", "source_row", "flagged", "column"):
        keys[column] = frame[column]
    if self._seen:
        earlier = pd.concat(self._seen, ignore_index=True)
        hits = keys.reset_index().merge(
            earlier, on=["_subject_test", "_time"], suffixes=("", "_old")
        )
        if len(hits):
            frame = self._resolve_repeats(frame, hits)
            keys = keys.loc[frame.index]
    self._seen.append(keys.reset_index(drop=True))
    return frame


def execute(self, *, detect_limits: bool) -> pd.DataFrame:
    raw = self.raw
    parsed = parse_values(raw["raw_value"])
    empty = parsed["status"] == V.EMPTY
    self._no_result_markers(empty)
    keep = ~empty
    self.raw, parsed, self.text = raw[keep], parsed[keep], self.text[keep]
    self.outcome = self.outcome[keep]
    self.flags = pd.Series("", index=self.raw.index, dtype=object)
    self.report.counts["results"] += int(keep.sum())
    self.value = parsed["value"].copy()
    self.qualifier = parsed["qualifier"].copy()
    self.test = self.raw["test"].astype(object).copy()
    self._test_codes: tuple[np.ndarray, np.ndarray] | None = None

    self._unknown_columns()
    status = parsed["status"]
    self.drop(status == V.TEXT, "text_result", "a number, optionally with <, <=, >, >=")
    self.drop(status == V.AMBIGUOUS, "ambiguous_number", "a decimal point, e.g. 1234 or 1.234")
    self.drop(status == V.LIMIT_ONLY, "limit_only", "a limit with its number, e.g. >1000")
    self._times()
    self._subjects()
    self._specimens()
    self._sentinels()
    self._lengths()
    self.slope = pd.Series(np.nan, index=self.raw.index)
    self.offset = pd.Series(np.nan, index=self.raw.index)
    unit = self._units()
    self._finite()
    self._references()
    self._plausible(unit)
    if detect_limits:
        self._censored()
    self._timing()
    self._duplicates()
    return self._result(unit)


def _censored(self) -> None:
    plain = self.live() & (self.qualifier == "") & self.value.notna()
    raw_numbers = pd.to_numeric(self.raw["raw_value"], errors="coerce")
    keys = pd.DataFrame(
        {"column": self.raw["column"], "unit": self.raw["raw_unit"]}, index=self.raw.index
    )[plain]
    groups = keys.groupby(["column", "unit"], sort=False, dropna=False).groups
    for _key, index in groups.items():
        numbers = raw_numbers[index]
        floor, ceiling = compute_reporting_limits(numbers.to_numpy(dtype=float))
        for limit, qualifier, word in ((floor, "<=", "floor"), (ceiling, ">=", "ceiling")):
            if limit is None:
                continue
            at = pd.Series(False, index=self.raw.index)
            at[index[numbers.to_numpy() == limit]] = True
            self.qualifier[at] = qualifier
            self.flag(
                at,
                "censored",
                f"a measured value; {limit:g} is this column's reporting {word} "
                f"({int(at.sum())} results), stored with qualifier {qualifier}",
            )


def _units(self) -> pd.Series:
    unit = pd.Series(None, index=self.raw.index, dtype=object)
    raw_unit = strip_text(self.raw["raw_unit"])
    live = self.live() & self.test.notna()
    groups = pd.DataFrame({"test": self.test, "unit": raw_unit.fillna(_NO_UNIT), "live": live})
    for (code, unit_text), index in groups[live].groupby(["test", "unit"]).groups.items():
        self._convert_group(code, None if unit_text == _NO_UNIT else unit_text, index, unit)
    return unit


def _convert_group(self, code: str, unit_text: str | None, index: pd.Index, unit: pd.Series):
    definition = self.catalogue[code]
    if unit_text is not None and definition.basis is not None:
        match = _BASIS.search(unit_text)
        if match:
            basis = match.group(1).upper()
            unit_text = _BASIS.sub("", unit_text).strip() or definition.unit
            if basis != definition.basis:
                definition = self._sibling(definition, basis)
                self._set_tests(index, definition.code)
    if definition.basis is not None and (
        unit_text is None or not _BASIS.search(str(self.raw.loc[index[0], "raw_unit"] or ""))
    ):
        self._column_note(index, "basis_implied", f"basis {definition.basis} ({code})")
    values = self.value[index].to_numpy(dtype=float)
    if unit_text is None:
        self._implied_unit(definition, index, values, unit)
        return
    reason = explain_unconvertible(
        unit_text,
        definition.unit,
        molar_mass=definition.molar_mass,
        analyte=definition.code,
    )
    if reason is None and definition.units:
        accepted = {normalize_unit(u) for u in (definition.unit, *definition.units)}
        if normalize_unit(unit_text) not in accepted:
            reason = f"{unit_text!r} is not among the units accepted for {definition.code}"
    if reason is not None:
        accepted = (
            "; accepted: " + ", ".join(dict.fromkeys((definition.unit, *definition.units)))
            if definition.units
            else ""
        )
        self._unit_problem(
            index,
            "unit_not_convertible",
            f"a unit convertible to {definition.unit} for {definition.code} "
            f"({definition.name}{accepted}): {reason}",
        )
        return
    converted = convert(values, unit_text, definition.unit, molar_mass=definition.molar_mass)
    factor = convert(
        np.array([0.0, 1.0]), unit_text, definition.unit, molar_mass=definition.molar_mass
    )
    self.value[index] = converted
    unit[index] = definition.unit
    self.slope[index] = factor[1] - factor[0]
    self.offset[index] = factor[0]


def _lengths(self) -> None:
    """Text longer than the database keeps: an error by row, on both backends alike."""
    long_code = (self.subject.str.len() > MAX_SUBJECT_CODE).fillna(False).astype(bool)
    self.drop(
        long_code & self.live(),
        "too_long",
        f"a subject ID of at most {MAX_SUBJECT_CODE} characters",
        "error",
        role="subject",
    )
    for column, role in (("raw_value", "value"), ("raw_unit", "unit"), ("specimen", "value")):
        limit = MAX_TEXT[column]
        text = strip_text(self.raw[column]) if column != "raw_value" else self.text
        lengths = text.astype("string").str.len()
        over = (lengths > limit).fillna(False).astype(bool) & self.live()
        if not over.any():
            continue
        what = {"raw_value": "result", "raw_unit": "unit", "specimen": "specimen"}[column]
        self.drop(
            over,
            "too_long",
            f"a {what} of at most {limit} characters (the database keeps no more)"
            + (": the specimen " + text[over].astype(str).str[:40] if column == "specimen" else ""),
            "error",
            role=role,
        )


def _specimens(self) -> None:
    given = map_unique(
        self.raw["specimen"], lambda v: v.astype("string").str.strip().str.casefold()
    )
    expected = map_unique(
        self._definition_series("specimen"), lambda v: v.astype("string").str.casefold()
    )
    blood_test = expected.isin(BLOOD_SPECIMENS | {"plasma", "serum"})
    other = given.notna() & ~given.isin(BLOOD_SPECIMENS) & blood_test
    if not other.any():
        return
    self.drop(
        other.fillna(False).astype(bool),
        "other_specimen",
        "a blood result; this row is " + given.fillna("") + " (e.g. urinalysis)",
    )


def _references(self) -> None:
    """Reference limits that are not finite numbers (1e309) are left empty, with a warning."""
    for column in ("ref_low", "ref_high"):
        cells = self.raw[column]
        numbers = pd.to_numeric(cells, errors="coerce").astype(float)
        bad = (numbers.notna() & ~np.isfinite(numbers.fillna(0.0))) & self.live()
        if not bad.any():
            continue
        rows = self.raw.loc[bad]
        self.report.add(
            "warning",
            "bad_reference",
            row=rows["source_row"].tolist(),
            column=column,
            value=_cell_text(cells[bad]).tolist(),
            expected="a finite reference limit; left empty",
        )
        values = cells.astype(object).copy()
        values[bad] = None
        self.raw = self.raw.assign(**{column: values})


def _ref(self, values: pd.Series, keep: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    if numbers.isna().all():
        return numbers
    converted = numbers * self.slope[keep] + self.offset[keep]
    return converted.where(np.isfinite(converted.fillna(0.0)))


def compute_reporting_limits(values: np.ndarray) -> tuple[float | None, float | None]:
    """(floor, ceiling) of plain numbers in ``values``; ``None`` where there is no such spike.

    Only positive values can be limits (0 is a physical bound, e.g. eosinophils 0 %; negatives are
    sentinels).
    """
    finite = values[np.isfinite(values)]
    n = len(finite)
    if n < MIN_RESULTS:
        return None, None
    counts = pd.Series(finite).value_counts().sort_index()
    levels = counts.index.to_numpy(dtype=float)
    sizes = counts.to_numpy()
    below = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    above = n - below - sizes
    floor = _spike(levels, sizes, below, n, np.quantile(finite, 0.1), lower=True)
    ceiling = _spike(levels, sizes, above, n, np.quantile(finite, 0.9), lower=False)
    return floor, ceiling


def _stripped(codes: pd.Series) -> pd.Series:
    """``codes.astype("string").str.strip()``, stripping each distinct code once (a file repeats
    its few subject codes on a million rows)."""
    text = codes.astype("string")
    position, distinct = pd.factorize(text)
    stripped = pd.Series(distinct, dtype=text.dtype).str.strip().reindex(position)
    stripped.index = text.index
    return stripped


def check_subject_codes(
    codes: pd.Series, rows: pd.Series, report: ValidationReport, *, column: str
) -> bool:
    """Report (error) subject codes that cannot be stored (too long) and a subject column that
    holds another column's content. ``codes``: each row's code as written (None where empty);
    ``rows``: the file's row numbers. Returns whether the column was found misplaced."""
    text = _stripped(codes)
    present = text.notna() & (text != "")
    if not present.any():
        return False
    frame = pd.DataFrame({"code": text[present].astype(str), "row": rows[present].to_numpy()})
    first = frame.drop_duplicates("code")
    too_long = first[first["code"].str.len() > MAX_SUBJECT_CODE]
    if len(too_long):
        report.add(
            "error",
            "too_long",
            row=too_long["row"].astype(int).tolist(),
            column=column,
            value=[c[:40] + "…" for c in too_long["code"]],
            expected=[
                f"a subject ID of at most {MAX_SUBJECT_CODE} characters (this one has {len(c)})"
                for c in too_long["code"]
            ],
        )
    kinds = dict(zip(first["code"], first["code"].map(code_kind), strict=True))
    per_row = frame["code"].map(kinds)
    counts = per_row.value_counts()
    if counts.empty or counts.sum() <= MISPLACED_SHARE * len(frame):
        return False
    kind = str(counts.index[0])
    examples = frame[per_row == kind].drop_duplicates("code")
    if kind == "numbers with decimals" and len(examples) < MIN_DECIMAL_CODES:
        return False  # a study may number a patient 6.5; results are many and vary
    shown = ", ".join(f"{c!r} (row {int(r)})" for c, r in examples.head(_SHOWN).to_numpy())
    more = f" and {len(examples) - _SHOWN} more" if len(examples) > _SHOWN else ""
    report.add(
        "error",
        "misaligned_columns",
        row=int(examples["row"].iloc[0]),
        column=column,
        value=str(examples["code"].iloc[0]),
        expected=f"subject IDs: column {column} holds {kind}, not subject IDs ({shown}{more}; "
        f"{int(counts.sum())} of {len(frame)} rows): are the columns shifted (a cell too many "
        "or too few on each row, e.g. a trailing comma) or the header's names in another "
        "order? Nothing was stored",
    )
    return True


def _timing(self) -> None:
    start = self.subject.map(self.subjects["start"]) if len(self.subjects) else None
    end = self.subject.map(self.subjects["end"]) if len(self.subjects) else None
    if start is None:
        return
    start = pd.to_datetime(start, utc=True)
    end = pd.to_datetime(end, utc=True)
    before = (self.time < start).fillna(False)
    after = (self.time > end).fillna(False)
    if before.any():
        self.flag(
            before,
            "before_enrolment",
            "a time at or after the subject's enrolment/admission, " + self._local(start[before]),
            role="time",
        )
    if after.any():
        self.flag(
            after,
            "after_discharge",
            "a time at or before the subject's discharge or death, " + self._local(end[after]),
            role="time",
        )


def write(self, rows: pd.DataFrame, subject_ids: pd.Series) -> dict[str, int]:
    """Store one validated chunk (see :func:`celltrial.ingest.validate.check_results`)."""
    if rows.empty:
        return self.counts
    frame = rows.copy()
    frame["subject_id"] = frame["subject"].map(subject_ids).astype("int64")
    frame["time"] = pd.to_datetime(frame["time"], utc=True).astype("datetime64[us, UTC]")
    if self._prior is None:
        self._start(len(frame))
    frame = self._within_file(frame)
    existing = self._existing(frame)
    if len(existing):
        merged = frame.merge(
            existing, on=["subject_id", "test", "time"], how="left", suffixes=("", "_old")
        )
        found = merged["id_old"].notna().to_numpy()
        same = (
            found
            & _same(merged["value"], merged["value_old"]).to_numpy()
            & (merged["qualifier"].fillna("") == merged["qualifier_old"].fillna("")).to_numpy()
        )
        self.counts["unchanged"] += int(same.sum())
        changed = merged[found & ~same]
        self.counts["updated"] += (
            len(changed) if self.dry else _update(self.session, self.batch, changed, self.source)
        )
        frame = merged.loc[~found, frame.columns]
    self.counts["inserted"] += self._insert(frame)
    return self.counts


def map_unique(series: pd.Series, func) -> pd.Series:
    codes, uniques = pd.factorize(series.to_numpy(dtype=object, na_value=None))
    mapped = func(pd.Series(uniques, dtype=object))
    values = np.asarray(pd.Series(mapped).astype(object).to_numpy(na_value=None), dtype=object)
    out = np.full(len(codes), None, dtype=object)
    present = codes >= 0
    out[present] = values[codes[present]]
    return pd.Series(out, index=series.index, dtype=object)


def _insert_sqlite(cursor: Any, frame: pd.DataFrame, batch_id: int, source: str) -> int:
    """executemany of tuples on the driver's cursor (same transaction), rows sorted by subject
    and time, constant columns of each group written as literals. The raw text is kept whole
    (SQLite does not enforce VARCHAR lengths; the generic path truncates)."""
    stamps = _utc_micros(frame["time"])
    order = np.lexsort((stamps, frame["subject_id"].to_numpy()))
    frame = frame.iloc[order]
    bound = {
        "subject_id": frame["subject_id"].to_numpy(dtype="int64"),
        "time": _sqlite_times(stamps[order]),
        "raw_value": frame["raw_value"].to_numpy(dtype=object, na_value=None),
        "value": _floats(frame["value"]),
        "source_row": frame["source_row"].to_numpy(dtype="int64"),
    }
    refs = {c: _floats(frame[c]) for c in ("ref_low", "ref_high")}
    missing_refs = {c: frame[c].isna().to_numpy() for c in refs}  # (None in refs)
    for key, positions in _same_values(frame, _GROUP_COLUMNS):
        constants = dict(zip(_GROUP_COLUMNS, key, strict=True))
        constants["import_batch_id"] = batch_id
        constants["source"] = source
        names = list(_BOUND_COLUMNS)
        arrays = [bound[c][positions] for c in _BOUND_COLUMNS]
        for column, values in refs.items():
            if missing_refs[column][positions].all():
                constants[column] = None
            else:
                names.append(column)
                arrays.append(values[positions])
        literals = {c: _literal(v, _MAX_TEXT.get(c)) for c, v in constants.items()}
        unsafe = [c for c, lit in literals.items() if lit is None]
        for column in unsafe:  # text that cannot be a literal (NUL): bind it
            names.append(column)
            arrays.append(np.array([constants[column]] * len(positions), dtype=object))
            del literals[column]
        columns = [*names, *literals]
        row_sql = f"({', '.join(['?'] * len(names) + list(literals.values()))})"
        _insert_rows(
            cursor, f"INSERT INTO observation ({', '.join(columns)}) VALUES ", row_sql, arrays
        )
    return len(frame)


def _same_values(
    frame: pd.DataFrame, columns: tuple[str, ...]
) -> Iterator[tuple[tuple[Any, ...], np.ndarray]]:
    """(values of ``columns``, None where missing; the positions of the rows holding them) per
    distinct combination, in order of first appearance, positions ascending. A groupby on
    these text columns hashes each row's tuple; integer codes per column are cheaper."""
    n = len(frame)
    if not n:
        return
    combined = np.zeros(n, dtype="int64")
    values = []
    for column in columns:
        cells = frame[column].to_numpy(dtype=object, na_value=None)
        codes, uniques = pd.factorize(cells)
        combined, _ = pd.factorize(combined * (len(uniques) + 1) + (codes + 1))
        values.append(cells)
    order = np.argsort(combined, kind="stable")
    bounds = np.cumsum(np.bincount(combined))[:-1]
    for positions in np.split(order, bounds):
        first = positions[0]
        yield tuple(cells[first] for cells in values), positions


def parse_times(
    raw: pd.Series, zone: ZoneInfo | str, *, order: DateOrder | None = None
) -> tuple[pd.Series, pd.Series]:
    """(UTC times, unreadable mask): NaT where the cell is empty or cannot be read.

    ``unreadable`` is True where a non-empty cell could not be read as a time: no whole date in
    it, a date before :data:`EARLIEST` or more than :data:`FUTURE_MARGIN` after now, a local
    time that does not exist or is ambiguous at a daylight-saving change, or a date with the
    year last whose day and month order is not decided (see the module's doc). Those are
    errors, never guessed. ``order``: the file's :class:`DateOrder` (default: the one of the
    enclosing :func:`date_order_scope`, else one for these cells alone).
    """
    if order is None:
        order = current_date_order() or DateOrder()
    key = str(zone)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return _in_range(raw.dt.tz_convert("UTC"), raw.notna())
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        naive = _naive_in_range(raw)
        local = naive.dt.tz_localize(key, ambiguous="NaT", nonexistent="NaT")
        return _in_range(local.dt.tz_convert("UTC"), raw.notna())
    if len(raw) > 1:
        codes, uniques = pd.factorize(raw.to_numpy(dtype=object, na_value=None))
        if len(uniques) < len(raw):  # times repeat (one draw, many results): parse each once
            times, bad = parse_times(pd.Series(uniques, dtype=object), zone, order=order)
            out_times = pd.Series(times.array.take(codes, allow_fill=True), index=raw.index)
            flags = np.append(bad.to_numpy(dtype=bool), False)  # code -1 (empty) → False
            return out_times, pd.Series(flags[codes], index=raw.index)
    text = raw.astype("string").str.strip()
    present = text.notna() & (text != "")
    dated = present & text.str.contains(_DATE).fillna(False).astype(bool)
    with_offset = dated & text.str.contains(_OFFSET, regex=True).fillna(False).astype(bool)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    if with_offset.any():
        aware = pd.to_datetime(text[with_offset], errors="coerce", utc=True, format="ISO8601")
        out[with_offset] = aware
    naive_mask = dated & ~with_offset
    text = _in_date_order(text, naive_mask, order)
    naive_mask &= text.notna()
    if naive_mask.any():
        naive = _naive_in_range(_to_naive(text[naive_mask]))
        local = naive.dt.tz_localize(key, ambiguous="NaT", nonexistent="NaT")
        out[naive_mask] = local.dt.tz_convert("UTC")
    return _in_range(out, present)


def _specimen(self, keep: pd.Series) -> pd.Series:
    given = self.raw.loc[keep, "specimen"].astype("string")
    default = self._definition_series("specimen")[keep].astype("string")
    return given.fillna(default).astype(object)


from celltrial.ingest.columns import resolve_tests
from celltrial.ingest.frame import complete_raw
from celltrial.ingest.long import _RANGE, _days, row_anchors
from celltrial.ingest.times import OFFSET_COLUMNS


def to_raw(
    table: pd.DataFrame,
    roles: dict[str, str],
    mapping: Mapping,
    *,
    first_row: int,
    subjects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """A long table's rows as a raw frame (times given as days: see :func:`read_long`)."""
    names = strip_text(table[roles["test"]])
    resolved = resolve_tests(names.dropna().unique().tolist(), mapping)
    lookup = pd.DataFrame.from_dict(
        resolved, orient="index", columns=["test", "name_unit", "map_specimen"]
    )
    info = lookup.reindex(names.to_numpy())
    info.index = table.index
    unit = table[roles["unit"]] if "unit" in roles else pd.Series(None, index=table.index)
    unit = strip_text(unit).fillna(info["name_unit"])
    days = _days(mapping, roles["time"])
    frame = pd.DataFrame(
        {
            "subject": table[roles["subject"]],
            "time": None if days else table[roles["time"]],
            "column": roles["value"],
            "name": names,
            "test": info["test"],
            "raw_value": table[roles["value"]],
            "raw_unit": unit,
            "specimen": table[roles["specimen"]] if "specimen" in roles else info["map_specimen"],
            "source_row": pd.RangeIndex(first_row, first_row + len(table)).to_numpy(),
        },
        index=table.index,
    )
    if "ref_low" in roles or "ref_high" in roles:
        frame["ref_low"] = table[roles["ref_low"]] if "ref_low" in roles else None
        frame["ref_high"] = table[roles["ref_high"]] if "ref_high" in roles else None
    elif "reference" in roles:
        bounds = table[roles["reference"]].astype("string").str.extract(_RANGE)
        frame["ref_low"] = bounds["lo"].str.replace(",", ".")
        frame["ref_high"] = bounds["hi"].str.replace(",", ".")
    frame["specimen"] = strip_text(frame["specimen"])
    out = complete_raw(frame)
    if days:
        assert mapping.offsets is not None
        subject = strip_text(table[roles["subject"]])
        extra = {
            "offset_days": table[roles["time"]].astype(object),
            "anchor": row_anchors(subject, mapping.offsets, subjects),
            "time_column": roles["time"],
        }
        for column in OFFSET_COLUMNS:
            out[column] = extra[column]
    out.attrs["same_day_repeats"] = mapping.same_day_repeats
    return out


from celltrial.ingest.validate import FLAGGED, OUTCOMES, REPORTED


def _result(self, unit: pd.Series) -> pd.DataFrame:
    counts = np.bincount(self.outcome.to_numpy(), minlength=len(OUTCOMES))
    for code, outcome in enumerate(OUTCOMES):
        self.report.counts[outcome] += int(counts[code])
    keep = self.outcome != REPORTED
    out = pd.DataFrame(
        {
            "subject": self.subject[keep],
            "time": self.time[keep],
            "test": self.test[keep],
            "raw_value": self.text[keep],
            "raw_unit": self.raw.loc[keep, "raw_unit"],
            "value": self.value[keep],
            "unit": unit[keep],
            "qualifier": self.qualifier[keep],
            "ref_low": self._ref(self.raw.loc[keep, "ref_low"], keep),
            "ref_high": self._ref(self.raw.loc[keep, "ref_high"], keep),
            "specimen": self._specimen(keep),
            "source_row": self.raw.loc[keep, "source_row"],
            "flagged": self.outcome[keep] == FLAGGED,
            "flags": self.flags[keep].map({"": None}).fillna(self.flags[keep].str[1:])
            if (self.flags[keep] != "").any()
            else None,
            "column": self.raw.loc[keep, "column"],
        }
    )
    return out.reset_index(drop=True)


from celltrial.ingest.times import (
    AMBIGUOUS_DATE_HINT,
    ambiguous_dates,
    date_only,
    describe_two_ways,
)


def _times(self) -> None:
    self._offsets()
    times, unreadable = parse_times(self.raw["time"], self.zone)
    unreadable = unreadable.fillna(False).astype(bool)
    self.time = times
    two_ways = unreadable.copy()  # of the unreadable, those written with the year last
    if unreadable.any():  # (a million readable times need no regular expression each)
        two_ways[unreadable] = ambiguous_dates(self.raw["time"][unreadable]).to_numpy()
    if two_ways.any():
        cells = self.cells("time", two_ways)
        order = current_date_order()
        said = f" ({order.describe()})" if order is not None else ""
        expected = cells.map(
            lambda v: (
                AMBIGUOUS_DATE_HINT.format(
                    value=v, one=describe_two_ways(v)[0], other=describe_two_ways(v)[1]
                )
                + said
            )
        )
        self.drop(
            two_ways, "ambiguous_date", expected.reindex(self.raw.index), "error", role="time"
        )
        unreadable &= ~two_ways
    if unreadable.any():
        example = pd.Timestamp("2020-02-10 08:30", tz=str(self.zone)).isoformat("T", "minutes")
        self.drop(
            unreadable,
            "bad_time",
            f"a date and time that exists, e.g. 2020-02-10 08:30 (local to {self.zone}) or "
            f"{example}",
            "error",
            role="time",
        )
    self.drop(times.isna(), "no_time", "the time the sample was taken", role="time")
    self.day_only = date_only(self.raw["time"])


from celltrial.ingest.validate import _results


def _subjects(self) -> None:
    code = strip_text(self.raw["subject"].astype("string")).astype("string")
    self.subject = code
    missing = code.isna()
    self.drop(missing, "unknown_subject", "a subject ID on every result", "error", role="subject")
    unknown = ~code.isin(self.subjects.index) & ~missing & self.live()
    if unknown.any():
        rows = self.raw.loc[unknown]
        first = rows.groupby(code[unknown], sort=True)["source_row"].agg(["min", "size"])
        where = self.column_of("subject", rows).iloc[0]
        self.report.add(
            "error",
            "unknown_subject",
            row=first["min"].tolist(),
            column=where,
            value=first.index.tolist(),
            expected=[
                "a subject of the study (or import with --register-subjects); "
                f"{_results(n)} of this subject in the file"
                for n in first["size"]
            ],
        )
        self.outcome[unknown] = REPORTED


from celltrial.errors import DataError


def _check_text(path: Path, what: str) -> None:
    """A NUL character (byte 0) marks a damaged or binary file, and no database keeps it."""
    offset = 0
    lines = 1
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            at = block.find(b"\x00")
            if at >= 0:
                line = lines + block.count(b"\n", 0, at)
                raise DataError(
                    f"{path}: line {line} holds a NUL character (byte {offset + at + 1} is 0); "
                    f"expected text: the {what} is damaged or not a CSV file"
                )
            lines += block.count(b"\n")
            offset += len(block)
