"""Terms an article counts for: words, word pairs, tags and its feed.

Rules (the README documents them; the trend output depends on every one):

* Text is NFKC-normalized and casefolded; typographic apostrophes become "'".
* A token is a run of letters/digits, optionally joined by single intra-word
  apostrophes or hyphens: "covid-19", "o'brien", "rock'n'roll".  Everything else
  (punctuation, underscores, symbols, emoji) separates tokens.
* English (and unknown-language) possessives lose their "'s": "trump's" -> "trump".
  French elisions lose their article: "l'europe" -> "europe", "qu'il" -> "il".
* Dropped: tokens with no letter at all ("2024", "3-2", "1st" is kept), tokens of
  one character, tokens longer than 40 characters (URLs, hashes, base64 junk), and
  stopwords (English always, plus the article's language for de/fr/es).
* Unigrams: every kept token.  Bigrams: two kept tokens that were *adjacent in the
  original text*: separated only by whitespace, with no dropped token between.
  So "Bank of England" gives "bank", "england" but no "bank england", and
  "Brexit: Johnson" gives no "brexit johnson" (punctuation breaks the pair).
  Title and summary never pair across each other.
* Tags become "tag:<tag>" (normalized like text, inner whitespace collapsed, not
  stopword-filtered); the feed becomes "feed:<feed_url>" (verbatim).  `feed:` terms
  give per-(window, feed) article counts through the same aggregation; the ranker
  excludes them.
* An article counts a term once.  At most `max_terms` terms per article, chosen by
  priority then position so the cut is deterministic: the feed term, tags (sorted),
  title unigrams, title bigrams, summary unigrams, summary bigrams.  The result is
  sorted.

Known limit: scripts without spaces (Chinese, Japanese, Thai) yield one long
token per run, which is usually dropped by the length cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from udfs.stopwords import normalize_word, primary_language, stopwords_for
from udfs.validate import Article

FEED_PREFIX = "feed:"
TAG_PREFIX = "tag:"
DEFAULT_MAX_TERMS = 64
MIN_TOKEN_CHARS = 2
MAX_TOKEN_CHARS = 40

# [^\W_] is "a letter or digit" in Unicode; \w would also admit "_".  The group makes
# `split` return the text between tokens too: [gap, token, gap, token, ..., gap].
_TOKEN = re.compile(r"([^\W_]+(?:['\-][^\W_]+)*)")
_HAS_LETTER = re.compile(r"[^\W\d_]")
_SPACES = re.compile(r"\s+")
_FRENCH_ELISION = re.compile(r"^(?:l|d|j|m|n|s|t|c|qu|jusqu|lorsqu|puisqu)'(?=[^\W_])")

# What each token, as matched, counts as in each language (None: dropped).  News
# vocabulary is Zipfian, so nearly every token of a rebuild is found here and skips
# the stopword, length and letter checks.  Cleared when full (about 10 MB a language),
# which only costs time.
_TOKEN_TERMS: dict[str, dict[str, str | None]] = {}
TOKEN_CACHE_SIZE = 100_000
_UNSEEN = object()


def token_term(token: str, language: str) -> str | None:
    """The term a normalized token counts as in an article of `language` (primary subtag), or None if dropped."""
    stopwords = stopwords_for(language)
    # "he's" is a stopword as written; only other words lose a possessive "'s".
    if language == "en" and token.endswith("'s") and token not in stopwords:
        token = token[:-2]
    elif language == "fr" and "'" in token:
        token = _FRENCH_ELISION.sub("", token, count=1)
    if (
        len(token) < MIN_TOKEN_CHARS
        or len(token) > MAX_TOKEN_CHARS
        or token in stopwords
        or _HAS_LETTER.search(token) is None
    ):
        return None
    return token


def _grams(text: str, language: str, out: dict[str, None], limit: int) -> None:
    """Append the text's unigrams, then its bigrams, to `out` (an ordered set) up to `limit`."""
    if not text or len(out) >= limit:
        return
    parts = _TOKEN.split(normalize_word(text))
    terms = _TOKEN_TERMS.get(language)
    if terms is None:
        terms = _TOKEN_TERMS[language] = {}
    unigrams: list[str] = []
    bigrams: list[str] = []
    previous: str | None = None  # last kept token, if nothing broke the chain since
    # parts[0::2] are the gaps, each before the token at the same place in parts[1::2].
    for gap, token in zip(parts[0::2], parts[1::2]):
        term = terms.get(token, _UNSEEN)  # one call: another thread may clear the table
        if term is _UNSEEN:
            term = token_term(token, language)
            if len(terms) >= TOKEN_CACHE_SIZE:
                terms.clear()
            terms[token] = term
        if term is None:
            previous = None
            continue
        unigrams.append(term)
        if previous is not None and gap.isspace():
            bigrams.append(f"{previous} {term}")
        previous = term
    for term in unigrams:
        out[term] = None
    for term in bigrams:
        out[term] = None


def extract_terms(
    title: str,
    summary: str,
    tags: Iterable[str],
    feed_url: str,
    language: str | None,
    *,
    include_summary: bool = False,
    max_terms: int = DEFAULT_MAX_TERMS,
) -> tuple[str, ...]:
    """The sorted, distinct terms one article counts for (see the module docstring)."""
    if max_terms < 1:
        raise ValueError("max_terms must be at least 1 (the feed term is always kept)")
    # dict as an insertion-ordered set: priority order decides what survives the cap.
    ordered: dict[str, None] = {FEED_PREFIX + feed_url: None}
    for tag in sorted(tags):
        name = _SPACES.sub(" ", normalize_word(tag)).strip()
        if name:
            ordered[TAG_PREFIX + name] = None
    lang = primary_language(language)
    _grams(title, lang, ordered, max_terms)
    if include_summary:
        _grams(summary, lang, ordered, max_terms)
    terms = list(ordered)
    if len(terms) > max_terms:
        del terms[max_terms:]
    terms.sort()
    return tuple(terms)


def article_terms(article: Article, *, include_summary: bool = False, max_terms: int = DEFAULT_MAX_TERMS) -> tuple[str, ...]:
    """`extract_terms` for a validated `udfs.validate.Article`."""
    return extract_terms(
        article.title,
        article.summary,
        article.tags,
        article.feed_url,
        article.language,
        include_summary=include_summary,
        max_terms=max_terms,
    )


def is_rankable(term: str) -> bool:
    """Feed pseudo-terms are counted but never ranked."""
    return not term.startswith(FEED_PREFIX)
