import pytest

from bertdemo.text import EmptyTextError, TextTooLongError, clean_text, try_clean


def test_seed_tweet_cleaning():
    # unescape HTML entities, drop @mentions and links, collapse whitespace
    raw = "@united  thanks &amp; see you   http://t.co/abc123 soon\n@JetBlue"
    assert clean_text(raw) == "thanks & see you soon"


def test_double_escaped_entities_and_www_links():
    assert clean_text("A &amp;amp; B www.example.com/x?y=1 C") == "A & B C"


def test_email_like_and_mid_word_at_are_not_mentions():
    assert clean_text("mail me at bob@example.com") == "mail me at bob@example.com"


def test_unicode_normalisation_and_invisible_characters():
    assert clean_text("ｆｕｌｌ\u200bwidth\u202e text") == "fullwidth text"
    assert clean_text("tab\there\x00and\x1bnull") == "tab here and null"


def test_emoji_sequences_survive():
    assert clean_text("great 👍🏽 ❤️ 👨\u200d👩\u200d👧") == "great 👍🏽 ❤️ 👨\u200d👩\u200d👧"


@pytest.mark.parametrize("raw", ["", "   \n\t ", None, "\u200b\u200b"])
def test_empty_input_is_refused(raw):
    with pytest.raises(EmptyTextError, match="empty|Nothing is left"):
        clean_text(raw)


@pytest.mark.parametrize("raw", ["https://example.com/a", "@united", "@united http://t.co/x"])
def test_only_links_or_mentions_leave_nothing(raw):
    with pytest.raises(EmptyTextError, match="Nothing is left to classify"):
        clean_text(raw)


def test_length_cap_is_checked_on_raw_input():
    with pytest.raises(TextTooLongError, match="100,000 characters long; the limit is 2,000"):
        clean_text("a" * 100_000)
    assert clean_text("a" * 2000) == "a" * 2000


def test_try_clean_reports_instead_of_raising():
    assert try_clean("ok") == ("ok", None)
    cleaned, reason = try_clean("   ")
    assert cleaned is None and "empty" in reason


def test_idempotent():
    once = clean_text("@a Hello &lt;b&gt; world http://x.y")
    assert clean_text(once) == once
