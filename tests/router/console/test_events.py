"""The change feed remembers which incidents each change touched, so an incident page re-reads
only for its own; when that is not known it says so (every incident page then re-reads)."""

from __future__ import annotations

from router.console.events import ChangeFeed, incident_event


def test_the_feed_names_the_incidents_changed_since_a_version() -> None:
    feed = ChangeFeed()
    feed.notify({"aa11"})
    feed.notify({"bb22", "aa11"})
    assert feed.changed_since(0) == {"aa11", "bb22"}
    assert feed.changed_since(1) == {"bb22", "aa11"}
    assert feed.changed_since(2) == frozenset()  # nothing since


def test_a_change_naming_nothing_or_long_forgotten_is_not_known() -> None:
    feed = ChangeFeed()
    feed.notify({"aa11"})
    feed.notify()  # e.g. a bare step update
    assert feed.changed_since(0) is None
    assert feed.changed_since(1) is None
    for _ in range(300):
        feed.notify({"cc33"})
    assert feed.changed_since(feed.version - 1) == {"cc33"}
    assert feed.changed_since(2) is None  # too far behind to say


def test_only_a_plain_id_becomes_an_event_name() -> None:
    assert incident_event("5f34b02919e740eeb45e") == "incident-5f34b02919e740eeb45e"
    assert incident_event("a b\nevent: x") == "incidents"
