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


@pytest.mark.parametrize("raw, cleaned", [
    ("&amp;amp;lt;b&amp;amp;gt; bold", "<b> bold"),  # escaped three times
    ("＆ｌｔ；3", "<3"),  # fullwidth characters that NFKC turns into an entity
    ("&l\u200bt;3", "<3"),  # an entity split by a zero-width space
    ("cafe\u200b\u0301", "café"),  # a zero-width space kept the accent from composing
    ("hi @a@b there", "hi there"),  # glued mentions: the second one used to survive
])
def test_cleaning_repeats_until_nothing_changes(raw, cleaned):
    assert clean_text(raw) == cleaned
    assert clean_text(cleaned) == cleaned


def test_only_joiners_or_variation_selectors_are_empty():
    with pytest.raises(EmptyTextError, match="Nothing is left"):
        clean_text("\u200d\ufe0f \u200d")


def test_length_cap_is_checked_again_after_normalisation():
    assert len(clean_text("\ufdfa")) == 18  # one character, 18 once NFKC-normalised
    with pytest.raises(TextTooLongError, match="Once normalised the text is 2,160 characters long"):
        clean_text("\ufdfa" * 120)


def test_a_text_escaped_too_many_times_over_is_refused():
    from bertdemo.text import MAX_PASSES, TooEncodedError

    # every pass reveals one more level: an entity that decodes to a zero-width space splits the
    # next entity, which only forms once that space is dropped
    layered = "x &am&ZeroWidthSpace;p;lt;3"
    assert clean_text(layered) == "x <3"
    for _ in range(MAX_PASSES):
        layered = layered.replace("&ZeroWidthSpace;", "&Zero&ZeroWidthSpace;WidthSpace;")
    with pytest.raises(TooEncodedError, match="too many times over"):
        clean_text(layered)
