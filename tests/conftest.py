import torch

# Small models run fastest single-threaded, and tests then don't fight over the 2 cores.
torch.set_num_threads(1)
