"""Run by test_trainer under two processes: one optimizer step of the weighted loss, then one of the distillation
loss, weights saved by rank 0."""

import sys
from pathlib import Path

import torch
from test_trainer import _one_step

if __name__ == "__main__":
    output = Path(sys.argv[1])
    weight = _one_step(output / "run", batch_size=4, accumulation=1)  # 2 processes × 4 = the 8 examples
    distilled = _one_step(output / "distill", batch_size=4, accumulation=1, distill=True)
    if torch.distributed.get_rank() == 0:
        torch.save(weight, output / "weight.pt")
        torch.save(distilled, output / "weight_distill.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()  # in order; left to the interpreter's exit it can abort a process
