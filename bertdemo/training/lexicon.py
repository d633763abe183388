"""The small word lists the starter behaviour tests are generated from (bertdemo.training.behaviour):
sentiment adjectives and verbs, airlines, brands, the things people tweet about, and the
mentions, links, hashtags and emoji that must not change a sentiment. Written for the project,
in the spirit of CheckList's lexicons (Ribeiro et al., ACL 2020); plain tuples, no logic."""

from __future__ import annotations

POSITIVE_ADJECTIVES = ("great", "amazing", "excellent", "friendly", "helpful", "wonderful", "fantastic",
                       "awesome", "comfortable", "perfect", "lovely", "brilliant")
NEGATIVE_ADJECTIVES = ("terrible", "awful", "rude", "horrible", "dirty", "disappointing", "unhelpful",
                       "miserable", "useless", "pathetic", "disgusting", "annoying")
# facts, not feelings: a tweet built from these carries no sentiment
NEUTRAL_ADJECTIVES = ("international", "domestic", "scheduled", "available", "new", "blue", "full", "open")

POSITIVE_VERBS = ("love", "like", "enjoy", "appreciate", "recommend", "admire", "adore", "value")
NEGATIVE_VERBS = ("hate", "dislike", "regret", "despise", "dread", "loathe", "resent", "detest")
NEUTRAL_VERBS = ("see", "find", "book", "check", "board", "take", "use", "need")

AIRLINES = ("United", "Delta", "JetBlue", "Southwest", "American", "Virgin America", "US Airways",
            "Alaska Airlines", "Spirit")
AIRLINE_OBJECTS = ("flight", "crew", "seat", "service", "staff", "food", "lounge", "pilot", "check-in",
                   "customer service")
BRANDS = ("Apple", "Samsung", "Google", "Amazon", "Netflix", "Starbucks", "Nike", "Microsoft")
BRAND_OBJECTS = ("phone", "laptop", "order", "app", "account", "delivery", "update", "store")

CITIES = ("Boston", "Chicago", "Denver", "Dallas", "Seattle", "Miami", "Newark", "Austin")
DAYS = ("today", "tomorrow", "on Monday", "on Friday", "tonight", "next week")

USERS = ("@jenny_m", "@mike_travels", "@sam", "@the_real_alex", "@dana42", "@newsdesk")
URLS = ("http://t.co/a1b2c3", "https://t.co/Zx9Qw7", "http://bit.ly/3kTq", "https://example.com/trip")
HASHTAGS = ("#travel", "#monday", "#news", "#flight", "#tech", "#update", "#weekend")
# objects and places only: faces and hearts carry sentiment of their own
NEUTRAL_EMOJI = ("\u2708\ufe0f", "\U0001f4f1", "\U0001f6eb", "\U0001f9f3", "\U0001f4cd", "\U0001f552",
                 "\U0001f4bb", "\U0001f4e6")

# endings that make a positive or neutral tweet negative (directional tests)
NEGATIVE_ENDINGS = ("Never again.", "Worst experience ever.", "What a joke.", "So disappointed.",
                    "Not impressed.")
