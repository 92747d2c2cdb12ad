"""Reference embeddings for tests/minilm.rs, computed independently of candle.

A plain NumPy forward pass of all-MiniLM-L6-v2 (BERT: embeddings, 6 encoder layers, exact-erf
GELU), the Hugging Face `tokenizers` Python package for word pieces (no padding, truncation to
256 like sentence-transformers), mean pooling and L2 normalisation. Needs numpy and tokenizers
(`pip install numpy && pip install --no-deps tokenizers`) and the model directory:

    python3 reference.py MODEL_DIR > reference.json
"""

import json
import math
import struct
import sys

import numpy as np
from tokenizers import Tokenizer

# The first sentence is the model card's example: its embedding starts 0.0677, 0.0635, 0.0487,
# 0.0793, 0.0374 in sentence-transformers, and this script reproduces that.
SENTENCES = [
    "This is an example sentence",
    "Our lawn has brown patches since the dog started digging along the fence.",
    "The pool needs opening for the summer season.",
    "Quarterly tax filing deadlines for small businesses.",
    "",
    "Gutters clogged with leaves; water spills over the porch every time it rains heavily "
    "and the downspout is detached at the bottom near the driveway.",
]


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue  # e.g. the I64 `embeddings.position_ids` buffer
        start, end = meta["data_offsets"]
        out[name] = np.frombuffer(data[base + start : base + end], dtype="<f4").reshape(meta["shape"])
    return out


def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)).astype(np.float64))


def embed(w, cfg, ids):
    p = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
    g = lambda k: w[p + k].astype(np.float64)
    n = len(ids)
    x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[:n]
    x = x + g("embeddings.token_type_embeddings.weight")[0]
    x = layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"))
    heads = cfg["num_attention_heads"]
    d = cfg["hidden_size"] // heads
    for i in range(cfg["num_hidden_layers"]):
        l = f"encoder.layer.{i}."
        lin = lambda name, t: t @ g(l + name + ".weight").T + g(l + name + ".bias")
        q = lin("attention.self.query", x).reshape(n, heads, d).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(n, heads, d).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(n, heads, d).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, heads * d)
        x = layer_norm(x + lin("attention.output.dense", ctx),
                       g(l + "attention.output.LayerNorm.weight"), g(l + "attention.output.LayerNorm.bias"))
        h = gelu(lin("intermediate.dense", x))
        x = layer_norm(x + lin("output.dense", h), g(l + "output.LayerNorm.weight"), g(l + "output.LayerNorm.bias"))
    v = x.mean(0)
    return v / np.linalg.norm(v)


def main():
    model_dir = sys.argv[1]
    cfg = json.load(open(f"{model_dir}/config.json"))
    w = load_safetensors(f"{model_dir}/model.safetensors")
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(256)
    rows = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        rows.append({"text": s, "tokens": len(ids), "embedding": [round(float(x), 6) for x in embed(w, cfg, ids)]})
    json.dump({"model": "sentence-transformers/all-MiniLM-L6-v2", "generator": "tests/data/reference.py", "rows": rows}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
