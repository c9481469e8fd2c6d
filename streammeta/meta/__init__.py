"""Meta-learning: task buffers, the outer loop, offline pretraining and the external memory."""
