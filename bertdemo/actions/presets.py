"""Ready-made sentence sets for the Embeddings tab: one word in two senses ("bat": the animal and
the cricket bat), with each occurrence's sense, so the tab can find the layer that separates them."""

from __future__ import annotations

from dataclasses import dataclass

from bertdemo.model.embeddings import split_sentences


# --------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    """Sentences that use `word` in two senses; `senses` names the sense of each occurrence, in
    reading order (line by line, left to right), so the tab can find the layer that separates them."""

    name: str
    word: str
    sentences: tuple[str, ...]
    senses: tuple[str, ...]
    explanation: str

    @property
    def text(self) -> str:
        return "\n".join(self.sentences)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("bat", "bat", (
        "I encountered a bat when I went to buy a cricket bat.",
        "We saw a bat flying around the barn at night.",
        "He hit the ball hard with his new cricket bat.",
    ), ("animal", "cricket", "animal", "cricket"),
        "The seed's sentence uses *bat* twice: the animal, then the cricket bat. The static input "
        "embedding is the same vector for both (similarity 1.0); in the middle layers the two animals "
        "(S1.1, S2.1) end up closer to each other than to either cricket bat (S1.2, S3.1)."),
    Preset("bank", "bank", (
        "I deposited my salary at the bank this morning.",
        "The bank approved our mortgage application.",
        "We had a picnic on the bank of the river.",
        "The boat drifted towards the muddy bank.",
    ), ("money", "money", "river", "river"),
        "Money bank versus river bank. Look at the heatmap: two bright blocks (one per sense) appear "
        "as soon as the first layers mix in the context."),
    Preset("bass", "bass", (
        "He plays bass in a jazz band.",
        "Turn up the bass on the speakers.",
        "We caught a huge bass in the lake.",
        "The fisherman grilled the bass for dinner.",
    ), ("music", "music", "fish", "fish"),
        "The instrument (and the low frequencies) versus the fish. A harder case for this small model: "
        "watch the line plot, where the senses only pull apart in the upper layers."),
    Preset("spring", "spring", (
        "The flowers bloom in spring.",
        "We are going to Japan next spring.",
        "The mattress has a broken spring.",
        "Compress the spring and let it go.",
    ), ("season", "season", "coil", "coil"),
        "The season versus the metal coil (a third sense, a water spring, is easy to add). The line "
        "plot shows how quickly each pair moves apart with depth."),
    Preset("crane", "crane", (
        "A crane lifted the steel beams onto the roof.",
        "The construction crane towered over the city.",
        "A crane stood on one leg in the marsh.",
        "The crane spread its wings and flew away.",
    ), ("machine", "machine", "bird", "bird"),
        "The machine versus the bird. Both senses are tall and lift their necks, yet the sentences "
        "around them (steel, roof / marsh, wings) pull the vectors apart."),
    Preset("mouse", "mouse", (
        "Click the left mouse button twice.",
        "My wireless mouse needs new batteries.",
        "The cat chased a mouse into the kitchen.",
        "A mouse nibbled the cheese in the pantry.",
    ), ("computer", "computer", "animal", "animal"),
        "The computer device versus the animal: a sense that did not exist a few decades ago. "
        "Compare the layers: at layer 0 only the position differs, and no single layer separates "
        "the senses perfectly here, which the margin in the summary shows."),
    Preset("apple", "apple", (
        "She ate a crisp red apple.",
        "Peel the apple and slice it for the pie.",
        "Apple released a new iPhone this year.",
        "Apple shares rose after the earnings report.",
    ), ("fruit", "fruit", "company", "company"),
        "The fruit versus the company. The model is uncased, so the capital A of Apple is invisible to "
        "it: only the context (iPhone, shares) tells the company apart."),
)}


DEFAULT_PRESET = "bat"


def preset_senses(sentences: str, word: str) -> tuple[str, ...] | None:
    """The senses of the preset whose text and word these are, unchanged; else None."""
    for p in PRESETS.values():
        if split_sentences(sentences) == split_sentences(p.text) and str(word).strip().lower() == p.word:
            return p.senses
    return None
