"""The Python side of `cargo xtask bench`: Hugging Face transformers and tokenizers on the inputs
that `flan-bench` prepared in DIR (tokenizer.json, train_examples.jsonl, prompts.json,
model-<shape>/ in the HF layout), timed the same way (warm-up runs, then timed runs).

Prints one JSON object per measurement on stdout, in flan-bench's line format; xtask pairs the
lines by `group`.

usage: python hf_bench.py DIR --data DATA --threads N --warmup W --reps R --shapes tiny[,small]
       [--part PART] --batch B --input-len L --target-len T --pipeline-examples N --pipeline-reps P --pipeline-warmup-examples W --gen-single K --new-tokens M
"""

import argparse
import csv
import json
import os
import random
import sys
import time

COT_TASKS = ["aqua", "creak", "ecqa", "gsm8k", "qasc", "sensemaking", "strategyqa"]


def emit(group, case, unit, samples, extra=None):
    side = "tokenizers" if group == "data pipeline" else "transformers"
    line = {"side": side, "group": group, "case": case, "unit": unit,
            "samples": samples, "extra": extra or {}}
    print(json.dumps(line), flush=True)


def time_runs(warmup, reps, fn):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


# ---------------------------------------------------------------------------------------------
# (4) Data pipeline: template + mix + tokenize + pack with the `tokenizers` package.

def read_cot(data):
    tasks = []
    for name in COT_TASKS:
        path = os.path.join(data, "flan-cot", f"{name}_train.tsv")
        rows = []
        with open(path, newline="", encoding="utf-8") as f:
            for lineno, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
                if len(row) != 3:
                    raise SystemExit(f"{path}:{lineno}: expected 3 tab-separated fields "
                                     f"(question, answer, rationale), got {len(row)}")
                rows.append(row)
        tasks.append(rows)
    return tasks


class Mixer:
    """Examples-proportional mixing with a seeded RNG, each task read in a shuffled order."""

    def __init__(self, tasks, seed):
        self.rng = random.Random(seed)
        self.tasks = tasks
        self.weights = [len(t) for t in tasks]
        self.orders = [self.rng.sample(range(len(t)), len(t)) for t in tasks]
        self.cursors = [0] * len(tasks)

    def next_batch(self, n):
        out = []
        for ti in self.rng.choices(range(len(self.tasks)), weights=self.weights, k=n):
            c = self.cursors[ti]
            q, a, r = self.tasks[ti][self.orders[ti][c % len(self.orders[ti])]]
            self.cursors[ti] = c + 1
            # The CoT template: question plus an instruction; the target is the rationale and the
            # answer (as flan-data's default CoT templates render them).
            out.append((f"{q}\nLet's think step by step.", f"{r} So the answer is {a}."))
        return out


def truncate(ids, n):
    return ids if len(ids) <= n else ids[: n - 1] + ids[-1:]


class Packer:
    """First-fit packing into rows of a fixed batch, t5x features as numpy arrays."""

    def __init__(self, np, batch, input_len, target_len):
        self.np, self.batch, self.il, self.tl = np, batch, input_len, target_len
        self.new_batch()

    def new_batch(self):
        np = self.np
        enc = (self.batch, self.il)
        dec = (self.batch, self.tl)
        self.f = {k: np.zeros(enc, np.int64) for k in
                  ("encoder_input_tokens", "encoder_segment_ids", "encoder_positions")}
        self.f.update({k: np.zeros(dec, np.int64) for k in
                       ("decoder_target_tokens", "decoder_input_tokens",
                        "decoder_segment_ids", "decoder_positions")})
        self.f["decoder_loss_weights"] = np.zeros(dec, np.float32)
        self.rows = []  # [enc_used, dec_used, segments]

    def push(self, inputs, targets):
        inputs, targets = truncate(inputs, self.il), truncate(targets, self.tl)
        emitted = None
        row = next((i for i, r in enumerate(self.rows)
                    if r[0] + len(inputs) <= self.il and r[1] + len(targets) <= self.tl), None)
        if row is None:
            if len(self.rows) == self.batch:
                emitted = self.f
                self.new_batch()
            self.rows.append([0, 0, 0])
            row = len(self.rows) - 1
        r = self.rows[row]
        r[2] += 1
        e, d, seg = r[0], r[1], r[2]
        ne, nd = len(inputs), len(targets)
        f = self.f
        f["encoder_input_tokens"][row, e:e + ne] = inputs
        f["encoder_segment_ids"][row, e:e + ne] = seg
        f["encoder_positions"][row, e:e + ne] = range(ne)
        f["decoder_target_tokens"][row, d:d + nd] = targets
        f["decoder_input_tokens"][row, d] = 0
        f["decoder_input_tokens"][row, d + 1:d + nd] = targets[:-1]
        f["decoder_segment_ids"][row, d:d + nd] = seg
        f["decoder_positions"][row, d:d + nd] = range(nd)
        f["decoder_loss_weights"][row, d:d + nd] = 1.0
        r[0] += ne
        r[1] += nd
        return emitted

    def finish(self):
        return self.f if self.rows else None


def bench_pipeline(args):
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(args.dir, "tokenizer.json"))
    tasks = read_cot(args.data)
    mixer = Mixer(tasks, 0)
    n = args.pipeline_examples

    def run():
        examples = mixer.next_batch(n)
        inputs = tok.encode_batch([e[0] for e in examples])
        targets = tok.encode_batch([e[1] for e in examples])
        packer = Packer(np, 32, args.input_len, args.target_len)
        for i, t in zip(inputs, targets):
            packer.push(i.ids, t.ids)
        packer.finish()

    # As on our side: stream --pipeline-warmup-examples untimed first, so that both tokenizers'
    # caches are as full as in a long training run.
    warmup_runs = args.warmup + -(-args.pipeline_warmup_examples // max(n, 1))
    secs = time_runs(warmup_runs, args.pipeline_reps, run)
    emit("data pipeline", "python tokenizers+numpy template+mix+tokenize+pack", "examples/s",
         [n / s for s in secs], {"examples": n, "warmup_examples": warmup_runs * n})


# ---------------------------------------------------------------------------------------------
# (1) Finetuning throughput and (2) greedy generation with transformers.

def padded(torch, examples):
    li = max(len(e["inputs"]) for e in examples)
    lt = max(len(e["targets"]) for e in examples)
    ids = torch.zeros((len(examples), li), dtype=torch.long)
    mask = torch.zeros((len(examples), li), dtype=torch.long)
    labels = torch.full((len(examples), lt), -100, dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e["inputs"])] = torch.tensor(e["inputs"])
        mask[row, : len(e["inputs"])] = 1
        labels[row, : len(e["targets"])] = torch.tensor(e["targets"])
    return ids, mask, labels


def checksum(ids):
    return sum((i + 1) * t for i, t in enumerate(ids))


def timed_training(args, model, examples):
    """`--warmup` untimed and `--reps` timed passes of Adafactor over padded batches of
    `examples`, training what requires a gradient; returns (seconds per pass, real tokens per
    pass, batches, trainable parameters)."""
    import torch
    from transformers.optimization import Adafactor

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = Adafactor(params, lr=1e-3, scale_parameter=False, relative_step=False, warmup_init=False)
    batches = [padded(torch, examples[i:i + args.batch])
               for i in range(0, len(examples), args.batch)]
    real = sum(len(e["inputs"]) + len(e["targets"]) for e in examples)

    def train():
        for ids, mask, labels in batches:
            opt.zero_grad()
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            out.loss.backward()
            opt.step()

    secs = time_runs(args.warmup, args.reps, train)
    return secs, real, len(batches), sum(p.numel() for p in params)


def bench_train(args, shape, examples, flushed):
    from transformers import T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(os.path.join(args.dir, f"model-{shape}"))
    secs, real, batches, _ = timed_training(args, model, examples)
    if flushed:
        emit(f"train {shape}, both flush denormals", "transformers padded, set_flush_denormal",
             "real tokens/s", [real / s for s in secs], {"batches": batches})
    else:
        emit(f"train {shape}", "transformers padded", "real tokens/s", [real / s for s in secs],
             {"batches": batches})


def peak_rss_mb():
    import resource
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def bench_train_variant(args, shape, variant, examples):
    """One training variant in this fresh process: `full` (transformers) or `lora` (peft, r=8 on
    q and v, PEFT's defaults otherwise), its real tokens/s and this process's peak RSS."""
    from transformers import T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(os.path.join(args.dir, f"model-{shape}"))
    case = "transformers full"
    if variant == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, target_modules=["q", "v"],
                                                 task_type="SEQ_2_SEQ_LM"))
        case = "peft lora r=8 q,v"
    elif variant != "full":
        raise SystemExit(f"hf_bench: unknown --train-variant {variant}")
    loaded = current_rss_mb()
    secs, real, batches, trainable = timed_training(args, model, examples)
    group = f"train lora {shape}" if variant == "lora" else f"train full {shape}, one process"
    emit(group, case, "real tokens/s", [real / s for s in secs],
         {"batches": batches, "trainable_parameters": trainable})
    emit(f"peak memory {variant} {shape}", case, "MB peak RSS", [peak_rss_mb()],
         {"rss_after_load_mb": loaded})


def parse_part(text):
    """`pipeline`, `train:SHAPE`, `generate:SHAPE:fp32` or `generate:SHAPE:bf16`, the parts
    flan-bench measures under the same names; xtask runs each part on both sides back to back."""
    fields = text.split(":")
    if fields == ["pipeline"]:
        return ("pipeline",)
    if len(fields) == 2 and fields[0] == "train" and fields[1]:
        return ("train", fields[1])
    if len(fields) == 3 and fields[0] == "generate" and fields[1] and fields[2] in ("fp32", "bf16"):
        return ("generate", fields[1], fields[2])
    raise argparse.ArgumentTypeError(
        f"expected pipeline, train:SHAPE, generate:SHAPE:fp32 or generate:SHAPE:bf16, got {text!r}")


def all_parts(shapes):
    parts = [("pipeline",)]
    for shape in shapes:
        parts += [("train", shape), ("generate", shape, "fp32"), ("generate", shape, "bf16")]
    return parts


def read_examples(args):
    with open(os.path.join(args.dir, "train_examples.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def run_part(args, part):
    import torch

    if part[0] == "pipeline":
        bench_pipeline(args)
    elif part[0] == "train":
        bench_train(args, part[1], read_examples(args), flushed=args.flush_denormals_train_only)
    else:
        with open(os.path.join(args.dir, "prompts.json"), encoding="utf-8") as f:
            prompts = json.load(f)
        # Generate with the saved initial weights, as our side does: training changes its copy.
        dtype, precision = (torch.float32, "") if part[2] == "fp32" else (torch.bfloat16, " bf16")
        bench_generation(args, part[1], prompts, dtype, precision)


def bench_generation(args, shape, prompts, dtype, precision):
    import torch
    from transformers import T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(os.path.join(args.dir, f"model-{shape}"),
                                                       dtype=dtype)
    model.eval()
    gen = dict(max_new_tokens=args.new_tokens, do_sample=False, num_beams=1, eos_token_id=1,
               pad_token_id=0, decoder_start_token_id=0)

    def produced(out):
        total, sums = 0, 0
        for row in out[:, 1:].tolist():
            n = row.index(1) + 1 if 1 in row else len(row)
            total += n
            sums += checksum(row[:n])
        return total, sums

    state = {}

    def single():
        total, sums = 0, 0
        for p in prompts[: args.gen_single]:
            ids = torch.tensor([p])
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **gen)
            t, s = produced(out)
            total, sums = total + t, sums + s
        state["b1"] = (total, sums)

    secs = time_runs(args.warmup, args.reps, single)
    total, sums = state["b1"]
    emit(f"generate {shape}{precision} batch 1", "transformers generate", "new tokens/s",
         [total / s for s in secs], {"new_tokens": total, "checksum": sums})

    ids, mask, _ = padded(torch, [{"inputs": p, "targets": [1]} for p in prompts])

    def batched():
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, **gen)
        state["b32"] = produced(out)

    secs = time_runs(args.warmup, args.reps, batched)
    total, sums = state["b32"]
    emit(f"generate {shape}{precision} batch {len(prompts)}", "transformers generate",
         "new tokens/s", [total / s for s in secs], {"new_tokens": total, "checksum": sums})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--data", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--shapes", default="tiny")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--target-len", type=int, default=128)
    p.add_argument("--pipeline-examples", type=int, default=4096)
    p.add_argument("--pipeline-reps", type=int, default=7)
    p.add_argument("--pipeline-warmup-examples", type=int, default=40000)
    p.add_argument("--gen-single", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--train-variant", choices=["full", "lora"],
                   help="only one training variant (one per process: its peak RSS is the "
                        "variant's), with denormals flushed as ours")
    p.add_argument("--flush-denormals-train-only", action="store_true",
                   help="only the training line, with torch.set_flush_denormal(True) set before "
                        "any parallel op so that the intra-op threads inherit it")
    p.add_argument("--part", type=parse_part,
                   help="only this part: pipeline, train:SHAPE, generate:SHAPE:fp32 or "
                        "generate:SHAPE:bf16 (default: every part of --shapes)")
    args = p.parse_args()
    if args.flush_denormals_train_only and args.part and args.part[0] != "train":
        p.error("--flush-denormals-train-only measures training: --part must be train:SHAPE")

    import torch
    if (args.flush_denormals_train_only or args.train_variant) and not torch.set_flush_denormal(True):
        raise SystemExit("hf_bench: this CPU cannot flush denormals")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)

    shapes = args.shapes.split(",")
    if args.train_variant:
        examples = read_examples(args)
        for shape in shapes:
            bench_train_variant(args, shape, args.train_variant, examples)
        return

    if args.part:
        parts = [args.part]
    elif args.flush_denormals_train_only:
        parts = [("train", shape) for shape in shapes]
    else:
        parts = all_parts(shapes)
    for part in parts:
        run_part(args, part)


if __name__ == "__main__":
    sys.exit(main())
