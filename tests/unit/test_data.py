"""Unit tests of cdarec.data: the atomic reader, data set loading and caching, the split.

The synthetic files are tiny and written per test, so every quirk the real files have
(CRLF, BOM, token_seq titles, missing years, items rated but not listed) is pinned down
without the download; the real ML-100K / ML-1M checks run when the data is present.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import cdarec.data.datasets as datasets_module
from cdarec.data import (
    DataError,
    Dataset,
    Item,
    history_before_test,
    leave_one_out,
    load_dataset,
    read_atomic,
    read_header,
)


def write(path: Path, text: str, *, crlf: bool = False, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if crlf:
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def same(a: Dataset, b: Dataset) -> bool:
    return (
        a.name == b.name
        and a.items == b.items
        and a.users == b.users
        and np.array_equal(a.indptr, b.indptr)
        and np.array_equal(a.inter_items, b.inter_items)
        and np.array_equal(a.inter_times, b.inter_times)
        and np.array_equal(a.inter_ratings, b.inter_ratings, equal_nan=True)
        and np.array_equal(a.popularity, b.popularity)
    )


# -- the atomic reader ----------------------------------------------------------------------
def test_read_atomic_types_crlf_and_bom(tmp_path: Path) -> None:
    p = write(
        tmp_path / "x.item",
        "item_id:token\ttitle:token_seq\tyear:float\temb:float_seq\n"
        "a\tToy Story\t1995\t0.5 1\n"
        "b\tHeat\t\t\n"
        "\n",
        crlf=True,
        bom=True,
    )
    t = read_atomic(p)
    assert t.names == ["item_id", "title", "year", "emb"]
    assert [str(f) for f in t.fields][1] == "title:token_seq"
    assert len(t) == 2
    assert t["item_id"] == ["a", "b"]  # no BOM glued to the first name, no '\r' on values
    assert t["title"] == [["Toy", "Story"], ["Heat"]]
    assert t["year"] == [1995.0, None]
    assert t["emb"] == [[0.5, 1.0], []]


def test_read_atomic_header_only_and_column_subset(tmp_path: Path) -> None:
    p = write(tmp_path / "e.inter", "user_id:token\titem_id:token\n")
    t = read_atomic(p)
    assert len(t) == 0 and t["user_id"] == [] and t["item_id"] == []

    # A bad value in a column nobody asked for does not matter.
    q = write(tmp_path / "u.user", "user_id:token\tage:float\nu1\told\n")
    t = read_atomic(q, columns=["user_id", "not_there"])
    assert t.columns == {"user_id": ["u1"]}
    assert [f.name for f in read_header(q)] == ["user_id", "age"]


def test_read_atomic_bad_column_count_names_file_and_line(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.inter", "a:token\tb:float\nx\t1\n\ny\n", crlf=True)
    with pytest.raises(DataError) as e:
        read_atomic(p)
    msg = str(e.value)
    assert "bad.inter" in msg and "line 4" in msg and "expected 2" in msg and "found 1" in msg


def test_read_atomic_unparsable_float_names_line(tmp_path: Path) -> None:
    p = write(tmp_path / "f.inter", "a:token\tr:float\nx\t1\ny\tfive\n")
    with pytest.raises(DataError, match=r"f\.inter: line 3: column 'r'.*'five'"):
        read_atomic(p)


@pytest.mark.parametrize(
    "header",
    ["user_id\titem_id", "user_id:token\titem_id:int", ":token", "a:token\ta:float", ""],
)
def test_read_atomic_bad_header(tmp_path: Path, header: str) -> None:
    p = write(tmp_path / "h.inter", header + "\nx\ty\n")
    with pytest.raises(DataError, match=r"h\.inter: line 1"):
        read_atomic(p)


def test_read_atomic_missing_file_and_latin1(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_atomic(tmp_path / "nope.inter")
    p = tmp_path / "l.item"
    p.write_bytes("item_id:token\tt:token\n1\tAm\xe9lie\n".encode("latin-1"))
    assert read_atomic(p)["t"] == ["Amélie"]


# -- loading a data set from a directory ----------------------------------------------------
@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Three users, one listed but silent; ties in time; an item only in .inter."""
    d = tmp_path / "tiny"
    write(
        d / "tiny.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u1\ti2\t4\t200\n"
        "u1\ti1\t5\t100\n"
        "u2\ti9\t2\t50\n"  # i9 is not in the item file
        "u1\ti3\t3\t200\n"  # ties with the first line: stays after it
        "u2\ti1\t1\t10\n"
        "u1\ti9\t4\t150\n",
        crlf=True,
    )
    write(
        d / "tiny.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "i1\tToy Story\t1995\tAnimation Comedy\n"
        "i2\tHeat (1995)\t1995.0\tAction Crime\n"
        "i3\tUnknown\tunkonwn\t\n"
        "i4\tNever Rated\t\tDrama\n",
    )
    write(d / "tiny.user", "user_id:token\tage:float\nu2\t20\nu0\t30\nu1\t40\n")
    return d


def test_load_directory(tiny: Path, tmp_path: Path) -> None:
    ds = load_dataset(str(tiny), tmp_path / "home")
    assert ds.name == "tiny"
    # Item file order, then items seen only in .inter.
    assert [it.item_id for it in ds.items] == ["i1", "i2", "i3", "i4", "i9"]
    assert ds.item_index == {"i1": 0, "i2": 1, "i3": 2, "i4": 3, "i9": 4}
    assert ds.item("i9") == Item("i9", "i9", None, ())
    assert ds.item(0) == Item("i1", "Toy Story", 1995, ("Animation", "Comedy"))
    assert ds.item("i2").year == 1995 and ds.item("i3").year is None
    assert ds.item("i4").year is None and ds.item("i4").genres == ("Drama",)
    assert ds.item("i1").label() == "Toy Story (1995)"
    assert ds.item("i2").label() == "Heat (1995)"  # the year is not doubled
    assert ds.item("i3").label() == "Unknown"
    assert ds.genres == ["Action", "Animation", "Comedy", "Crime", "Drama"]

    # User file order; u0 is listed but has no interactions.
    assert ds.users == ["u2", "u0", "u1"]
    assert ds.has_user("u0") and not ds.has_user("u3")
    assert ds.sequence("u0").tolist() == []
    # By time, ties keep file order (i2 before i3 at t=200).
    assert [ds.items[i].item_id for i in ds.sequence("u1")] == ["i1", "i9", "i2", "i3"]
    assert ds.timestamps("u1").tolist() == [100, 150, 200, 200]
    assert ds.ratings("u1").tolist() == [5, 4, 4, 3]
    assert [ds.items[i].item_id for i in ds.sequence("u2")] == ["i1", "i9"]
    assert ds.sequence("u1").dtype == np.int32
    assert ds.timestamps("u1").dtype == np.float64
    assert ds.ratings("u1").dtype == np.float32
    assert ds.popularity.tolist() == [2, 1, 1, 0, 2]
    assert ds.n_interactions == 6
    with pytest.raises(ValueError):
        ds.sequence("u1")[0] = 3  # shared arrays are read-only
    with pytest.raises(KeyError, match="u3"):
        ds.sequence("u3")
    with pytest.raises(KeyError):
        ds.item("nope")


def test_load_min_rating_keeps_ids(tiny: Path, tmp_path: Path) -> None:
    full = load_dataset(tiny, tmp_path / "home")
    ds = load_dataset(tiny, tmp_path / "home", min_rating=4)
    assert ds.item_index == full.item_index and ds.users == full.users
    assert [ds.items[i].item_id for i in ds.sequence("u1")] == ["i1", "i9", "i2"]
    assert ds.sequence("u2").tolist() == []
    assert ds.n_interactions == 3
    with pytest.raises(DataError, match="min_rating"):
        load_dataset(tiny, tmp_path / "home", min_rating=float("nan"))


def test_load_minimal_directory_and_errors(tmp_path: Path) -> None:
    d = tmp_path / "somewhere"
    # Only an .inter file, not named after the directory, no rating or timestamp.
    write(d / "other.inter", "user_id:token\titem_id:token\na\tx\na\ty\nb\tx\n")
    ds = load_dataset(d, tmp_path / "home")
    assert ds.name == "other"
    assert [it.item_id for it in ds.items] == ["x", "y"] and ds.users == ["a", "b"]
    assert ds.sequence("a").tolist() == [0, 1]  # file order stands in for time
    assert np.isnan(ds.ratings("a")).all()
    with pytest.raises(DataError, match="rating"):
        load_dataset(d, tmp_path / "home", min_rating=3)

    write(d / "third.inter", "user_id:token\titem_id:token\n")
    with pytest.raises(DataError, match=r"several \.inter files"):
        load_dataset(d, tmp_path / "home")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no \.inter file"):
        load_dataset(empty, tmp_path / "home")
    with pytest.raises(DataError, match="unknown data set"):
        load_dataset(str(tmp_path / "missing"), tmp_path / "home")

    bad = tmp_path / "bad"
    write(bad / "bad.inter", "user:token\titem_id:token\na\tx\n")
    with pytest.raises(DataError, match="no 'user_id' column"):
        load_dataset(bad, tmp_path / "home")


def test_cache_reused_rebuilt_and_robust(
    tiny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    first = load_dataset(tiny, home)
    cached = sorted((home / "cache").rglob("*"))
    npz = next(p for p in cached if p.suffix == ".npz")
    meta = next(p for p in cached if p.suffix == ".json")
    assert same(load_dataset(tiny, home), first)

    # Damaged caches are ignored and rewritten, never fatal.
    for victim, junk in ((npz, b"not a zip"), (meta, b"{broken"), (npz, b"")):
        victim.write_bytes(junk)
        caplog.clear()
        assert same(load_dataset(tiny, home), first)
        assert "damaged data set cache" in caplog.text
        assert same(load_dataset(tiny, home), first)  # and the rewrite is readable

    # Changing a source file invalidates the cache.
    inter = tiny / "tiny.inter"
    inter.write_text(inter.read_text() + "u0\ti4\t5\t1\n")
    st = inter.stat()
    os.utime(inter, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    again = load_dataset(tiny, home)
    assert again.n_interactions == 7 and again.sequence("u0").tolist() == [3]


# -- leave-one-out ------------------------------------------------------------------------
def hand_made() -> Dataset:
    """Users with 0, 1, 2 and 5 interactions, already in time order."""
    items = [Item(f"i{k}", f"Title {k}", None, ()) for k in range(6)]
    seqs = {"n0": [], "n1": [4], "n2": [1, 2], "n5": [0, 1, 2, 3, 5]}
    flat = [i for s in seqs.values() for i in s]
    indptr = np.cumsum([0] + [len(s) for s in seqs.values()])
    return Dataset(
        "hand",
        items,
        list(seqs),
        indptr,
        np.array(flat),
        np.arange(len(flat), dtype=float),
        np.ones(len(flat)),
    )


def test_leave_one_out() -> None:
    ds = hand_made()
    s = leave_one_out(ds)
    assert set(s.train) == set(s.valid) == set(s.test) == {"n0", "n1", "n2", "n5"}
    assert s.train["n0"].tolist() == [] and s.valid["n0"] is None and s.test["n0"] is None
    assert s.train["n1"].tolist() == [] and s.valid["n1"] is None and s.test["n1"] == 4
    assert s.train["n2"].tolist() == [1] and s.valid["n2"] is None and s.test["n2"] == 2
    assert s.train["n5"].tolist() == [0, 1, 2] and s.valid["n5"] == 3 and s.test["n5"] == 5
    assert all(isinstance(v, int) for v in s.test.values() if v is not None)
    assert s.train["n5"].dtype == np.int32
    assert s.test_users() == ["n1", "n2", "n5"] and s.valid_users() == ["n5"]

    assert history_before_test(ds, "n0").tolist() == []
    assert history_before_test(ds, "n1").tolist() == []
    assert history_before_test(ds, "n2").tolist() == [1]
    assert history_before_test(ds, "n5").tolist() == [0, 1, 2, 3]


# -- the real data sets ---------------------------------------------------------------------
REAL_HOME = Path(os.environ.get("CDAREC_HOME", Path.home() / ".cache" / "cdarec")).expanduser()


def real_home(tmp_path: Path, name: str) -> Path:
    """A home whose datasets/ is the real one, so cache files land in tmp_path."""
    src = REAL_HOME / "datasets" / name
    if not (src / f"{name}.inter").is_file():
        pytest.skip(
            f"{name} is not downloaded under {REAL_HOME}/datasets (run `cdarec` once "
            "or set CDAREC_HOME); skipping the real-data check"
        )
    home = tmp_path / "home"
    (home / "datasets").mkdir(parents=True)
    (home / "datasets" / name).symlink_to(src, target_is_directory=True)
    return home


def test_ml100k_counts_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = real_home(tmp_path, "ml-100k")
    ds = load_dataset("ml-100k", home)

    def no_parsing(*a: object, **k: object) -> None:
        raise AssertionError("the second load parsed the files instead of using the cache")

    monkeypatch.setattr(datasets_module, "_build", no_parsing)
    again = load_dataset("ml-100k", home)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    assert int((ds.popularity > 0).sum()) == 1682
    assert ds.item("1").label() == "Toy Story (1995)"
    assert len(ds.sequence("196")) == 39
    assert np.all(np.diff(ds.timestamps("196")) >= 0)
    assert same(ds, again)


def test_ml1m_counts(tmp_path: Path) -> None:
    home = real_home(tmp_path, "ml-1m")
    ds = load_dataset("ml-1m", home)
    again = load_dataset("ml-1m", home)
    assert (ds.n_users, ds.n_interactions) == (6040, 1_000_209)
    assert ds.n_items == 3883 and int((ds.popularity > 0).sum()) == 3706
    toy = ds.item("Toy Story (1995)")
    assert (toy.title, toy.year, toy.label()) == ("Toy Story", 1995, "Toy Story (1995)")
    assert toy.genres == ("Animation", "Children's", "Comedy")
    assert len(ds.genres) == 18
    assert same(ds, again)
