"""What runs the network (classifier, attributions, embeddings, label noise); knows nothing of the database."""
