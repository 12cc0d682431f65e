from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.eventgen import encode, event
from udfs import terms as terms_module
from udfs.stopwords import APOSTROPHES, ENGLISH, FRENCH, GERMAN, SPANISH, normalize_word, primary_language, stopwords_for
from udfs.terms import article_terms, extract_terms, is_rankable
from udfs.validate import Article, parse_event

FEED = "https://feeds.example/rss"


def words(title: str, language: str | None = "en", **kw: object) -> set[str]:
    """The text-derived terms only (no feed: term)."""
    terms = extract_terms(title, kw.pop("summary", ""), kw.pop("tags", ()), FEED, language, **kw)  # type: ignore[arg-type]
    return {t for t in terms if not t.startswith("feed:")}


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Quantum Computing", {"quantum", "computing", "quantum computing"}),
        ("QUANTUM computing", {"quantum", "computing", "quantum computing"}),
        ("Ｑｕａｎｔｕｍ", {"quantum"}),  # NFKC folds full-width letters
        ("Straße", {"strasse"}),  # casefold, not lower
        ("The Bank of England", {"bank", "england"}),  # stopwords break bigrams
        ("Brexit: Johnson", {"brexit", "johnson"}),  # punctuation breaks bigrams
        ("Brexit - Johnson", {"brexit", "johnson"}),
        ("COVID-19 vaccine", {"covid-19", "vaccine", "covid-19 vaccine"}),
        ("O'Brien wins", {"o'brien", "wins", "o'brien wins"}),
        ("O\u2019Brien", {"o'brien"}),  # typographic apostrophe
        ("Trump's plan", {"trump", "plan", "trump plan"}),  # possessive
        ("Apple\u2019s chips", {"apple", "chips", "apple chips"}),
        ("2024 election", {"election"}),  # pure numbers dropped
        ("Election 2024 results", {"election", "results"}),  # a dropped number breaks the pair
        ("3-2 win", {"win"}),
        ("F1 race", {"f1", "race", "f1 race"}),  # alphanumerics kept
        ("x marks", {"marks"}),  # single characters dropped
        ("a" * 41 + " ok", {"ok"}),  # overlong tokens dropped
        ("foo_bar", {"foo", "bar"}),  # underscores separate
        ("hello 🚀 world", {"hello", "world"}),  # the emoji is not whitespace
        ("-leading trailing-", {"leading", "trailing", "leading trailing"}),
        ("", set()),
        ("the of and", set()),
        ("Fußball  \t WM", {"fussball", "wm", "fussball wm"}),
    ],
)
def test_title_terms(title: str, expected: set[str]) -> None:
    assert words(title) == expected


@pytest.mark.parametrize(
    ("title", "language", "expected"),
    [
        ("Die Wahl ist vorbei", "de", {"wahl", "vorbei"}),
        ("Die Wahl ist vorbei", "en", {"die", "wahl", "ist", "vorbei", "die wahl", "wahl ist", "ist vorbei"}),
        ("Das Ergebnis, daß", "de-AT", {"ergebnis"}),
        ("L'Europe et la France", "fr", {"europe", "france"}),
        ("qu'il pleuve", "fr", {"pleuve"}),
        ("L'Europe", "en", {"l'europe"}),  # no elision outside French
        ("El gobierno de España", "es", {"gobierno", "españa"}),
        ("the government", "es", {"government"}),  # English is always on
        ("the government", None, {"government"}),
        ("the government", "xx", {"government"}),
    ],
)
def test_languages(title: str, language: str | None, expected: set[str]) -> None:
    assert words(title, language) == expected


@pytest.mark.parametrize(
    ("language", "primary"),
    [(None, "en"), ("", "en"), ("en", "en"), ("DE", "de"), ("de-AT", "de"), ("fr_CA", "fr"), ("es", "es"), ("pt", "en")],
)
def test_primary_language(language: str | None, primary: str) -> None:
    assert primary_language(language) == primary


def test_stopword_sets() -> None:
    assert "the" in ENGLISH and "und" in GERMAN and "dass" in GERMAN and "très" in FRENCH and "pero" in SPANISH
    assert ENGLISH <= GERMAN and ENGLISH <= FRENCH and ENGLISH <= SPANISH
    assert "us" not in ENGLISH and "may" not in ENGLISH
    assert stopwords_for("de") is GERMAN
    assert all(isinstance(s, frozenset) for s in (ENGLISH, GERMAN, FRENCH, SPANISH))


def test_tags_and_feed_terms() -> None:
    terms = extract_terms("Chips", "", ["AI", "machine  learning", " ", "the"], FEED, "en")
    assert terms == ("chips", "feed:" + FEED, "tag:ai", "tag:machine learning", "tag:the")


def test_summary_only_when_asked() -> None:
    assert "summary" not in words("Title", summary="Summary words")
    assert {"summary", "words", "summary words"} <= words("Title", summary="Summary words", include_summary=True)
    # no bigram across title and summary
    assert "title summary" not in words("Title", summary="Summary", include_summary=True)


def test_terms_are_sorted_and_unique() -> None:
    terms = extract_terms("chips chips chips Chips", "", [], FEED, "en")
    assert terms == tuple(sorted(set(terms)))
    assert terms == ("chips", "chips chips", "feed:" + FEED)


def test_cap_keeps_priorities() -> None:
    title = " ".join(f"word{i:03d}x" for i in range(100))
    terms = extract_terms(title, "", ["zz"], FEED, "en", max_terms=10)
    assert len(terms) == 10
    assert "feed:" + FEED in terms and "tag:zz" in terms
    # the 8 other slots go to the first title unigrams, not to bigrams
    assert {t for t in terms if t.startswith("word")} == {f"word{i:03d}x" for i in range(8)}
    assert extract_terms(title, "", [], FEED, "en", max_terms=1) == ("feed:" + FEED,)
    with pytest.raises(ValueError):
        extract_terms(title, "", [], FEED, "en", max_terms=0)


def test_article_terms_matches_extract_terms() -> None:
    article = parse_event(encode(event(title="Quantum chips", summary="More chips", tags=["hw"])))
    assert isinstance(article, Article)
    assert article_terms(article, include_summary=True) == extract_terms(
        "Quantum chips", "More chips", ["hw"], article.feed_url, "en", include_summary=True
    )


def test_is_rankable() -> None:
    assert is_rankable("chips") and is_rankable("tag:ai") and not is_rankable("feed:x")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.text(max_size=80), st.lists(st.text(max_size=10), max_size=5), st.sampled_from(["en", "de", "fr", "es", None]))
def test_terms_invariants(title: str, summary: str, tags: list[str], language: str | None) -> None:
    terms = extract_terms(title, summary, tags, FEED, language, include_summary=True, max_terms=20)
    assert terms == tuple(sorted(set(terms)))
    assert 1 <= len(terms) <= 20
    assert "feed:" + FEED in terms
    stop = stopwords_for(language)
    for term in terms:
        if term.startswith(("feed:", "tag:")):
            continue
        parts = term.split(" ")
        assert 1 <= len(parts) <= 2
        assert all(p not in stop and 2 <= len(p) <= 40 for p in parts)
    assert extract_terms(title, summary, tags, FEED, language, include_summary=True, max_terms=20) == terms


# Texts that reach the tokenizer's ASCII shortcut and its slow path alike.
_MIXED_TEXT = st.text(alphabet=st.sampled_from(list("ab cz'-`_.:1 he's l'qu") + ["\u2019", "\u00c9", "\u00df", "\ufb01", "\u2010", "\t"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_the_ascii_shortcut_normalizes_as_the_full_rule(text: str) -> None:
    assert normalize_word(text) == unicodedata.normalize("NFKC", text).casefold().translate(APOSTROPHES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_MIXED_TEXT, st.sampled_from(["en", "de", "fr", "es", "fr-CA", None])), min_size=1, max_size=8))
def test_the_token_cache_gives_what_the_rules_give(articles: list[tuple[str, str | None]]) -> None:
    # Warm: every text seen under every language first, so tokens come from the cache.
    warm = [extract_terms(t, t, [], FEED, lang, include_summary=True) for t, lang in articles]
    cold = []
    for title, language in articles:
        terms_module._TOKEN_TERMS.clear()
        cold.append(extract_terms(title, title, [], FEED, language, include_summary=True))
    assert warm == cold


def test_the_token_cache_keeps_each_language_apart_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    terms_module._TOKEN_TERMS.clear()
    assert "europe" in extract_terms("l'europe", "", [], FEED, "fr")
    # The same token under English rules is not elided (and "l'europe" is its own term).
    assert "l'europe" in extract_terms("l'europe", "", [], FEED, "en")
    assert "europe" not in extract_terms("l'europe", "", [], FEED, "en")
    monkeypatch.setattr(terms_module, "TOKEN_CACHE_SIZE", 3)
    extract_terms("alpha bravo charlie delta echo foxtrot", "", [], FEED, "de")
    assert len(terms_module._TOKEN_TERMS["de"]) <= 3
    assert extract_terms("alpha bravo", "", [], FEED, "de") == ("alpha", "alpha bravo", "bravo", "feed:" + FEED)
