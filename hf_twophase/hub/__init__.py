"""Talking to the Hugging Face Hub: the client glue (matrix datasets, winners, errors), cards, and the local
Hub-compatible server with its request guard."""
