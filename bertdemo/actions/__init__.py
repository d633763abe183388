"""One adapter per tab (predict, annotate, train, embeddings): plain Python in and out, no Gradio."""
