"""bertdemo: see, correct and retrain a BERT sentiment classifier in one browser tab."""

__version__ = "0.1.0"
