#!/usr/bin/env python3
"""Writes the example model files that config/example-files.json serves.

    python3 tools/make_example_model.py [OUTDIR]   (default: config/models)

  ln16.safetensors  the LayerNorm of a 16-wide layer as Hugging Face
                    exports it: encoder.layer.0.output.LayerNorm.weight
                    (F32, shape [16]) and .bias (BF16, shape [16]), with
                    __metadata__ {"format": "pt"}
  ln16_bias.npy     the same bias as numpy.save writes it: format 1.0,
                    '<f4', shape (16,)

Standard library only (struct, json), so it runs without numpy, torch or
safetensors; the layouts follow numpy/lib/format.py and the safetensors
specification. Every value is exact in bfloat16 and float32, so both files
hold the same bias bit for bit once widened to float32. The output is
deterministic: rerunning it leaves the committed files unchanged.
"""
import json
import os
import struct
import sys

N = 16
GAIN = [1.0 + ((i % 4) - 1.5) / 8.0 for i in range(N)]  # 0.8125 .. 1.1875
BIAS = [(2 * i - 15) / 64.0 for i in range(N)]  # -0.234375 .. 0.234375


def f32_bytes(values):
    return struct.pack("<%df" % len(values), *values)


def bf16_bytes(values):
    out = b""
    for v in values:
        bits = struct.unpack("<I", struct.pack("<f", v))[0]
        assert bits & 0xFFFF == 0, "%r is not exact in bfloat16" % v
        out += struct.pack("<H", bits >> 16)
    return out


def safetensors(tensors, metadata):
    """tensors: [(name, dtype, shape, raw bytes)] in file order."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the safetensors writer pads to 8
    return struct.pack("<Q", len(text)) + text + data


def npy(descr, shape, raw):
    """Format 1.0, header padded with spaces to a multiple of 64 bytes and
    ended by a newline, as numpy.save writes it."""
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    text = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    pad = -(10 + len(text) + 1) % 64
    text = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + raw


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("config", "models")
    os.makedirs(out, exist_ok=True)
    st = safetensors(
        [("encoder.layer.0.output.LayerNorm.weight", "F32", [N], f32_bytes(GAIN)),
         ("encoder.layer.0.output.LayerNorm.bias", "BF16", [N], bf16_bytes(BIAS))],
        {"format": "pt"})
    files = {"ln16.safetensors": st, "ln16_bias.npy": npy("<f4", (N,), f32_bytes(BIAS))}
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print("%s: %d bytes" % (os.path.join(out, name), len(data)))


if __name__ == "__main__":
    main()
