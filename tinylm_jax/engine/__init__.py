"""A compiled run: the model, optimizer, train state, jitted steps, loss and checkpoints."""
