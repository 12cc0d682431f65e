"""`feedtrends ingest` / `generate` end to end without Kafka (connectors/ingest.py)."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
from collections import Counter
from collections.abc import Hashable
from pathlib import Path

import jsonschema
import pytest

from connectors.feed_server import FeedServer
from connectors.ingest import parse_start_ms, run_generate, run_ingest
from connectors.producer import SendReport
from connectors.synthetic import GeneratorConfig
from feedtrends import cli
from feedtrends.arguments import duration_seconds
from feedtrends.ingest_cli import add_generate_arguments, add_ingest_arguments, generate_command, ingest_command

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
SCHEMA = jsonschema.Draft202012Validator(json.loads((REPO / "schemas" / "event-v1.schema.json").read_text()))
SAMPLE_EVENTS = 42  # entries in samples/feeds/*, none rejected
SUMMARY_OK = "feeds ok=5 not_modified=0 failed=0; entries new=42 already_sent=0 rejected=0"


@pytest.fixture()
def samples(tmp_path: Path) -> Path:
    """A private copy, so tests can touch files."""
    shutil.copytree(SAMPLES, tmp_path / "samples")
    return tmp_path / "samples"


def dry_run(feeds_file: Path, state: Path | None, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    summary = run_ingest(
        str(feeds_file), once=True, allow_files=True, dry_run=True,
        state_path=str(state) if state else None, out=out, err=err, **kwargs,
    )
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    return summary, events, err.getvalue()


@pytest.mark.parametrize("feed_list", ["feeds.opml", "feeds.txt", "feeds.yaml"])
def test_dry_run_of_samples_then_nothing_new(samples: Path, tmp_path: Path, feed_list: str) -> None:
    state = tmp_path / "state.json"
    summary, events, err = dry_run(samples / feed_list, state)
    assert len(events) == SAMPLE_EVENTS
    assert err.splitlines()[0] == SUMMARY_OK
    assert summary.exit_code == 0
    for event in events:
        SCHEMA.validate(event)
    published = [e["published_at"] for e in events]
    assert published == sorted(published)  # sent oldest first
    sources = Counter(e["published_at_source"] for e in events)
    assert sources == {"published": 40, "updated": 1, "first_seen": 1}
    # Same article in several feeds: one article id, one event per feed.
    by_article = Counter(e["article_id"] for e in events)
    assert by_article["url:https://coastalherald.example.com/2026/11/20/storm-bram-landfall"] == 2
    assert by_article["url:https://matchday.example.com/football/northport-win-final-penalties"] == 2
    assert len({e["event_id"] for e in events}) == SAMPLE_EVENTS

    summary, events, err = dry_run(samples / feed_list, state)
    assert events == []
    assert err.splitlines()[0] == "feeds ok=0 not_modified=5 failed=0; entries new=0 already_sent=0 rejected=0"


def test_changed_file_resends_only_new_entries(samples: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    dry_run(samples / "feeds.txt", state)
    feed = samples / "feeds" / "techwire.rss"
    text = feed.read_text().replace(
        "<item>",
        "<item><title>Veyron X9 teardown</title><link>https://techwire.example.com/news/teardown</link>"
        "<pubDate>Fri, 20 Nov 2026 12:10:00 +0000</pubDate></item>\n    <item>",
        1,
    )
    feed.write_text(text)
    summary, events, err = dry_run(samples / "feeds.txt", state)
    assert [e["title"] for e in events] == ["Veyron X9 teardown"]
    assert err.splitlines()[0] == "feeds ok=1 not_modified=4 failed=0; entries new=1 already_sent=8 rejected=0"


def test_dry_run_without_state_sends_everything_again(samples: Path) -> None:
    assert len(dry_run(samples / "feeds.opml", None)[1]) == SAMPLE_EVENTS
    assert len(dry_run(samples / "feeds.opml", None)[1]) == SAMPLE_EVENTS


def test_failed_feed_gives_exit_code_and_reason_and_the_rest_goes_on(samples: Path, tmp_path: Path) -> None:
    (samples / "feeds" / "broken.rss").write_text("<html><body>Gateway timeout</body></html>")
    feeds = samples / "feeds.txt"
    feeds.write_text(feeds.read_text() + "feeds/broken.rss\nfeeds/missing.rss\n")
    summary, events, err = dry_run(feeds, tmp_path / "state.json")
    assert len(events) == SAMPLE_EVENTS
    assert err.splitlines()[0] == "feeds ok=5 not_modified=0 failed=2; entries new=42 already_sent=0 rejected=0"
    assert "failed:html_page=1" in err and "failed:file_not_found=1" in err
    assert summary.exit_code == 1
    state = json.loads((tmp_path / "state.json").read_text())
    broken = state["feeds"][(samples / "feeds" / "broken.rss").as_uri()]
    assert broken["consecutive_failures"] == 1 and broken["last_error"] == "html_page"


def test_files_refused_without_allow_files(samples: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    summary = run_ingest(str(samples / "feeds.txt"), once=True, allow_files=False, dry_run=True, state_path=None, out=out, err=err)
    assert out.getvalue() == ""
    assert summary.feeds_failed == 5 and "failed:files_not_allowed=5" in err.getvalue()


class FailingSink:
    """Loses every record of one feed, as a broker outage would."""

    def __init__(self, failing_feed: str) -> None:
        self.failing_feed = failing_feed
        self.delivered: list[bytes] = []
        self.pending: list[tuple[bytes, Hashable]] = []

    def send(self, key: bytes | None, value: bytes, timestamp_ms: int, tag: Hashable = None) -> None:
        self.pending.append((value, tag))

    def flush(self) -> SendReport:
        report = SendReport()
        for value, tag in self.pending:
            if tag == self.failing_feed:
                report.failed += 1
                report.failed_tags.add(tag)
                report.errors["KafkaTimeoutError"] += 1
            else:
                report.sent += 1
                self.delivered.append(value)
        self.pending.clear()
        return report

    def close(self) -> None:
        pass


def test_undelivered_events_are_not_marked_sent(samples: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    techwire = (samples / "feeds" / "techwire.rss").as_uri()
    sink = FailingSink(techwire)
    err = io.StringIO()
    summary = run_ingest(str(samples / "feeds.txt"), once=True, allow_files=True, state_path=str(state), sink=sink, err=err)
    assert summary.feeds_failed == 1 and summary.exit_code == 1
    assert "failed:produce_failed=1" in err.getvalue()
    assert len(sink.delivered) == SAMPLE_EVENTS - 8
    # Next run (after the backoff) fetches techwire again and sends its 8 entries.
    healthy = FailingSink("nobody")
    later = lambda: 10**10  # noqa: E731 - far past the backoff
    summary = run_ingest(str(samples / "feeds.txt"), once=True, allow_files=True, state_path=str(state), sink=healthy, err=io.StringIO(), clock=later)
    assert (summary.feeds_ok, summary.feeds_not_modified, summary.entries_new) == (1, 4, 8)
    assert all(json.loads(v)["feed_url"] == techwire for v in healthy.delivered)


def test_every_mode_polls_until_max_polls(samples: Path) -> None:
    sleeps: list[float] = []
    err = io.StringIO()
    summary = run_ingest(
        str(samples / "feeds.opml"), once=False, every_seconds=300, allow_files=True, dry_run=True,
        state_path=None, out=io.StringIO(), err=err, max_polls=3, sleep=sleeps.append,
    )
    assert summary.polls == 3 and len(sleeps) == 2 and all(0 < s <= 300 for s in sleeps)
    lines = err.getvalue().splitlines()
    assert lines[0] == SUMMARY_OK
    assert lines[-1] == "feeds ok=0 not_modified=5 failed=0; entries new=0 already_sent=0 rejected=0"


def test_ingest_over_http_with_local_server(tmp_path: Path) -> None:
    with FeedServer(str(SAMPLES / "feeds")) as server:
        feeds = tmp_path / "feeds.txt"
        feeds.write_text("".join(server.url_for(name) + "\n" for name in sorted(os.listdir(SAMPLES / "feeds"))))
        first = dry_run(feeds, tmp_path / "state.json")
        second = dry_run(feeds, tmp_path / "state.json")
    assert len(first[1]) == SAMPLE_EVENTS and first[2].startswith(SUMMARY_OK)
    assert second[1] == [] and second[0].feeds_not_modified == 5


# --------------------------------------------------------------------------- generate


def test_run_generate_dry_run_prints_records_and_counts() -> None:
    out, err = io.StringIO(), io.StringIO()
    config = GeneratorConfig(count=500, seed=5, duplicates=0.1, malformed=0.04)
    summary = run_generate(config, dry_run=True, out=out, err=err)
    lines = out.getvalue().splitlines()
    assert len(lines) == 500
    assert summary.counts["duplicate"] == 50 and sum(v for k, v in summary.counts.items() if k.startswith("malformed:")) == 20
    assert err.getvalue().startswith("injected ok=430 duplicate=50 out_of_order=0 late=0 malformed=20 (")
    assert summary.exit_code == 0


# --------------------------------------------------------------------------- CLI


def parse(add, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def test_ingest_cli_dry_run(samples: Path, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    args = parse(add_ingest_arguments, [str(samples / "feeds.opml"), "--once", "--allow-files", "--dry-run"])
    assert ingest_command(args) == 0
    captured = capsysbinary.readouterr()
    assert len(captured.out.splitlines()) == SAMPLE_EVENTS
    assert SUMMARY_OK.encode() in captured.err
    assert not (tmp_path / ".feedtrends").exists()  # dry runs keep no state unless --state is given


def test_ingest_cli_arguments() -> None:
    args = parse(add_ingest_arguments, ["feeds.txt", "--every", "5m", "--state", "s.json", "--topic", "t", "--partitions", "4"])
    assert (args.every, args.state, args.topic, args.partitions, args.once) == (300.0, "s.json", "t", 4, False)
    with pytest.raises(SystemExit):
        parse(add_ingest_arguments, ["feeds.txt", "--once", "--every", "5m"])
    with pytest.raises(SystemExit):
        parse(add_ingest_arguments, ["feeds.txt", "--every", "300"])  # unit required


def test_ingest_cli_bad_feed_list_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "feeds.txt"
    bad.write_text("gopher://old.example/feed\n")
    assert cli.main(["ingest", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("feedtrends ingest: ") and "unsupported scheme" in err
    assert cli.main(["ingest", str(tmp_path / "nope.txt"), "--dry-run"]) == 2
    assert "nope.txt" in capsys.readouterr().err


def test_generate_cli(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    args = parse(add_generate_arguments, ["--count", "200", "--seed", "9", "--duplicates", "0.1", "--late", "0.05",
                                          "--out-of-order", "0.05", "--malformed", "0.05", "--dry-run"])
    assert generate_command(args) == 0
    captured = capsysbinary.readouterr()
    assert len(captured.out.splitlines()) == 200
    assert captured.err.startswith(b"injected ok=150 duplicate=20 out_of_order=10 late=10 malformed=10")
    assert cli.main(["generate", "--count", "10", "--duplicates", "0.7", "--late", "0.7", "--dry-run"]) == 2
    assert capsysbinary.readouterr().err.startswith(b"feedtrends generate: ")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("250ms", 0.25), ("1.5h", 5400)])
def test_duration_flags_are_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["30", "0s", "-5m", "5 minutes", ""])
def test_duration_flags_need_a_unit_and_a_positive_value(text: str) -> None:
    # A bare number is milliseconds in the config but would be read as seconds on a
    # command line: refused rather than guessed.
    with pytest.raises(argparse.ArgumentTypeError):
        duration_seconds(text)


def test_parse_start() -> None:
    assert parse_start_ms("2026-11-20T00:00:00Z") == 1_795_132_800_000
    assert parse_start_ms("2026-11-20T01:00:00+01:00") == 1_795_132_800_000
    assert parse_start_ms("1795132800000") == 1_795_132_800_000


def _write_rss(path: Path, ids: list[str], mtime_ns: int) -> None:
    items = "".join(
        f"<item><title>Story {i}</title><link>https://wgrz.example.com/news/{i}</link>"
        f"<pubDate>Fri, 20 Nov 2026 11:00:00 GMT</pubDate></item>"
        for i in ids
    )
    path.write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>WGRZ</title>{items}</channel></rss>')
    os.utime(path, ns=(mtime_ns, mtime_ns))  # a new fingerprint every poll


def test_an_id_the_feed_still_lists_is_never_forgotten(tmp_path: Path) -> None:
    """Polled twice a day, a feed lists one evergreen article while 500 new stories a
    poll pass through it: well over 5,000 ids.  The evergreen one is sent once; ids
    that left the feed are forgotten once they have been gone longer than the dedup
    TTL, so what is remembered comes back down to the feed's own size."""
    feed = tmp_path / "wgrz.rss"
    feeds_file = tmp_path / "feeds.txt"
    feeds_file.write_text(feed.as_uri() + "\n")
    state = tmp_path / "state.json"
    sink = FailingSink("nobody")
    start_s, half_day_s, polls = 1_795_000_000.0, 43_200.0, 12
    for poll in range(polls):
        _write_rss(feed, ["evergreen"] + [f"story-{poll}-{i}" for i in range(500)], mtime_ns=poll + 1)
        summary = run_ingest(
            str(feeds_file), once=True, allow_files=True, state_path=str(state), sink=sink, err=io.StringIO(),
            clock=lambda: start_s + poll * half_day_s,
        )
        assert summary.feeds_ok == 1
    sent = [json.loads(v)["article_id"] for v in sink.delivered]
    assert sent.count("url:https://wgrz.example.com/news/evergreen") == 1
    assert len(sent) == len(set(sent)) == 1 + polls * 500

    # Eight days later (dedup TTL 7 days) the feed is unchanged but re-served: every
    # story that left it long ago is forgotten; what it still lists is not.
    _write_rss(feed, ["evergreen"] + [f"story-{polls - 1}-{i}" for i in range(500)], mtime_ns=polls + 1)
    summary = run_ingest(
        str(feeds_file), once=True, allow_files=True, state_path=str(state), sink=sink, err=io.StringIO(),
        clock=lambda: start_s + (polls - 1) * half_day_s + 8 * 86_400,
    )
    assert summary.entries_new == 0 and summary.entries_already_sent == 501
    entry = json.loads(state.read_text())["feeds"][feed.as_uri()]
    remembered = set(entry["sent_event_ids"]) | set(entry.get("left_feed_at", {}))
    assert len(remembered) == 501
