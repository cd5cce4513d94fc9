"""The purpose rules as a decision table (``enclave_policy.rules.check_job``): every
branch, its exact decision and reason, in the order the rules apply."""

from __future__ import annotations

import pytest

from enclave_policy import DEFAULT_POLICY, load_policy
from enclave_policy.rules import (
    _bad_param,
    _inflected,
    _strings,
    check_job,
    normalise,
    one_to_n_marker,
)

B = {"kind": "bench", "purpose": "verify_1to1", "model": "m"}
T = {"kind": "train", "purpose": "train", "model": "m", "trainer": "pca_head"}


@pytest.fixture(scope="module")
def gov(tmp_path_factory):
    text = DEFAULT_POLICY.read_text().replace(
        "[tenants]\n", '[tenants]\ntrainee = { purposes = ["train"] }\n'
    )
    p = tmp_path_factory.mktemp("pol") / "policy.toml"
    p.write_text(text)
    return load_policy(p).governance


TABLE = [
    ({"kind": "bench", "model": "m"}, "acme", "the job spec must name its kind and purpose"),
    ({"purpose": "verify_1to1"}, "acme", "the job spec must name its kind and purpose"),
    ({**B, "purpose": 7}, "acme", "the job spec must name its kind and purpose"),
    ({**B, "kind": None}, "acme", "the job spec must name its kind and purpose"),
    (
        {**B, "purpose": "identify_1toN"},
        "acme",
        "purpose 'identify_1toN' is forbidden by the policy ([purposes] forbidden)",
    ),
    ({**B, "purpose": "marketing"}, "acme", "purpose 'marketing' is not an allowed purpose"),
    (B, "trainee", "tenant 'trainee' is not granted purpose 'verify_1to1'"),
    ({**B, "kind": "train"}, "acme", "a 'train' job does not serve purpose 'verify_1to1'"),
    ({**B, "kind": "export"}, "acme", "a 'export' job does not serve purpose 'verify_1to1'"),
    (
        {**B, "split": "gallery"},
        "acme",
        "the job asks for 1:N search ('gallery' in split), which the policy forbids "
        "whatever purpose is declared",
    ),
    (
        {**B, "k": 5},
        "acme",
        "a 'bench' job takes no 'k' (it takes kind, model, purpose, split)",
    ),
    (
        {**T, "zeta": 1, "alpha": 2},
        "acme",
        "a 'train' job takes no 'alpha' (it takes kind, model, params, purpose, split, trainer)",
    ),
    (
        {**T, "trainer": "os:system"},
        "acme",
        "trainer 'os:system' is not registered in [jobs] trainers",
    ),
    ({**T, "trainer": None}, "acme", "trainer None is not registered in [jobs] trainers"),
]


@pytest.mark.parametrize(("spec", "tenant", "reason"), TABLE)
def test_each_rule_refuses_with_its_exact_reason(gov, spec, tenant, reason) -> None:
    d = check_job(gov, tenant, spec)
    assert d.allowed is False
    assert d.reason == reason


@pytest.mark.parametrize(
    ("spec", "tenant", "reason"),
    [
        (B, "acme", "bench for verify_1to1, granted to acme"),
        ({**B, "split": "test"}, "acme", "bench for verify_1to1, granted to acme"),
        (T, "trainee", "train for train, granted to trainee"),
        ({**T, "params": {"dim": 8}, "split": "train"}, "acme", "train for train, granted to acme"),
    ],
)
def test_what_the_rules_allow(gov, spec, tenant, reason) -> None:
    d = check_job(gov, tenant, spec)
    assert d.allowed is True and d.reason == reason


def test_strings_walks_keys_values_lists_and_nesting() -> None:
    spec = {"a": {"b": ["x", {"c": "y"}], "n": 3}, "t": ("z",)}
    assert list(_strings(spec)) == [
        ("a (key)", "a"),
        ("a.b (key)", "b"),
        ("a.b.0", "x"),
        ("a.b.1.c (key)", "c"),
        ("a.b.1.c", "y"),
        ("a.n (key)", "n"),
        ("t (key)", "t"),
        ("t.0", "z"),
    ]


def test_the_marker_is_reported_with_where_it_was_found() -> None:
    markers = ("gallery", "top_k")
    assert one_to_n_marker({"params": {"mode": "a Gallery"}}, markers) == ("gallery", "params.mode")
    assert one_to_n_marker({"params": {"topK": 1}}, markers) == ("top_k", "params.topK (key)")
    assert one_to_n_marker({"params": {"mode": "plain"}}, markers) is None


@pytest.mark.parametrize(
    ("word", "stem", "hit"),
    [
        ("rank", "rank", True),
        ("ranks", "rank", True),
        ("ranked", "rank", True),
        ("ranking", "rank", True),
        ("rankings", "rank", True),
        ("ranker", "rank", True),
        ("search", "search", True),
        ("searches", "search", True),
        ("galleries", "gallery", True),
        ("identified", "identify", True),
        ("identification", "identify", True),
        ("identifications", "identify", True),
        ("frankly", "rank", False),
        ("rankle", "rank", False),
        ("searchlight", "search", False),
        ("galleria", "gallery", False),
        ("track", "rank", False),
        ("identity", "identify", False),
    ],
)
def test_inflections(word: str, stem: str, hit: bool) -> None:
    assert _inflected(word, stem) is hit


def test_normalise_splits_folds_and_drops() -> None:
    assert normalise("TopK-Gallery_v2") == ["top", "k", "gallery", "v", "2"]
    assert normalise("ｇａｌ\u00adlеry") == ["gallery"]
    assert normalise("naïve") == ["naive"]
    assert normalise("") == []


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_number_parameter_must_be_finite(gov, bad) -> None:
    # Python's json reads NaN and Infinity: a spec file can carry them
    ok = check_job(gov, "acme", {**T, "params": {"dim": 8.5}, "split": "train"})
    assert ok.allowed is True  # control: a finite float is a number
    d = check_job(gov, "acme", {**T, "params": {"dim": bad}, "split": "train"})
    assert d.allowed is False
    assert d.reason == "trainer 'pca_head': parameter 'dim' must be a finite number"


@pytest.mark.parametrize(
    "by, ok",
    [
        ("1999-12-31", False),
        ("0001-01-01", False),
        ("2000-01-01", True),
        ("9899-01-01", True),
        ("9999-12-31", False),  # a due date computed from it could pass date.max
    ],
)
def test_destroy_by_is_bounded_to_years_a_lab_can_exist_in(tmp_path, by, ok) -> None:
    from facelab.errors import BadInputError

    text = DEFAULT_POLICY.read_text().replace(
        "[tenants]\n",
        f'[tenants]\nacme = {{ purposes = ["verify_1to1"], destroy_by = {by} }}\n',
    )
    p = tmp_path / "policy.toml"
    p.write_text(text)
    if ok:
        assert load_policy(p).governance.tenants["acme"].destroy_by.isoformat() == by
    else:
        with pytest.raises(BadInputError, match=f"destroy_by {by} is outside"):
            load_policy(p)


# ------------------------------------------------------------ a trainer's declared parameters

DECLARED = {"n": "number", "f": "flag", "t": "text"}


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({}, ""),
        ({"n": 3, "f": True, "t": "x"}, ""),
        ({"n": -2.5, "f": False, "t": ["a", "b"]}, ""),
        ({"t": []}, ""),  # an empty list of texts
        ([("n", 1)], "params must be an object"),
        ("n=1", "params must be an object"),
        ({"lr": 0.1}, "takes no parameter 'lr'"),
        ({"n": True}, "parameter 'n' must be a finite number"),  # a bool is not a number
        ({"n": "3"}, "parameter 'n' must be a finite number"),
        ({"f": 1}, "parameter 'f' must be true or false"),
        ({"f": "true"}, "parameter 'f' must be true or false"),
        ({"t": 3}, "parameter 't' must be text"),
        ({"t": ["a", 3]}, "parameter 't' must be text"),
        ({"t": {"a": "b"}}, "parameter 't' must be text"),
    ],
)
def test_a_trainers_parameters_must_match_its_declaration(params, why) -> None:
    assert _bad_param(params, DECLARED) == why


def test_an_undeclared_parameter_refuses_the_training_job(gov) -> None:
    d = check_job(gov, "acme", {**T, "params": {"dim": 8, "lr": 0.1}, "split": "train"})
    assert d.allowed is False and d.reason == "trainer 'pca_head': takes no parameter 'lr'"


# ------------------------------------------------------------ where a marker is found


@pytest.mark.parametrize(
    ("text", "marker", "hit"),
    [
        ("search", "search", True),
        ("the galleries of the lab", "gallery", True),  # inflected, words after it
        ("a ranked list", "rank", True),  # inflected, four-letter stem
        ("top k", "top_k", True),  # two words
        ("one to many", "one_to_many", True),  # three words
        ("gal le ry", "gallery", True),  # three pieces joined
        ("onetomany", "one_to_many", True),  # the words of the marker joined
        ("top", "top", True),
        ("tops", "top", False),  # a stem under four letters is matched whole only
        ("knns", "knn", False),
        ("research", "search", False),
    ],
)
def test_a_marker_is_a_word_a_run_of_words_or_an_inflection(text, marker, hit) -> None:
    assert (one_to_n_marker({"mode": text}, (marker,)) is not None) is hit
