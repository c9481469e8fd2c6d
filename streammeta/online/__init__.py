"""The online loop: the state arena, the model, the inner loop and the engine that
runs rounds of observations."""
