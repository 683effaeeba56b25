"""Convert Google's uint8 TFLite MobileNet v1 (embedding extractor) to a PyTorch state dict.

Every weight and folded-BN bias is dequantised (real = scale * (q - zero_point)); the layout is
changed from TFLite's OHWI / 1HWC to PyTorch's OIHW. The result is checked against the TFLite
interpreter on real images (cosine of the 1024-d pooled features) and written as safetensors
with the keys of ``mars_lite.method.standin.MobileNetV1`` (``layers.{i}.conv.weight/bias``).

    python tools/standin/convert_mobilenet.py \
        --tflite WEIGHTS/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite \
        --images DATA/mini_sbir --out /tmp/mobilenet_v1.safetensors

Needs ``ai-edge-litert`` (the TFLite runtime, for reading the file only).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from mars_lite.method.standin import MobileNetV1

WEIGHT_RE = re.compile(r"Conv2d_(\d+)(?:_(depthwise|pointwise))?/weights_quant/FakeQuantWithMinMaxVars")
BIAS_RE = re.compile(r"^MobilenetV1/MobilenetV1/Conv2d_(\d+)(?:_(depthwise|pointwise))?/BatchNorm_Fold/bias$")


def layer_index(block: str, kind: str | None) -> int:
    """TFLite layer (Conv2d_0 stem, Conv2d_i_depthwise/pointwise) -> index in MobileNetV1.layers."""
    i = int(block)
    return 0 if i == 0 else 2 * i - (kind == "depthwise")


def dequantise(interp, detail) -> np.ndarray:
    q = interp.get_tensor(detail["index"]).astype(np.float64)
    qp = detail["quantization_parameters"]
    scales, zeros = qp["scales"].astype(np.float64), qp["zero_points"].astype(np.float64)
    if scales.size > 1:  # per-channel (not used by this file, handled for safety)
        shape = [1] * q.ndim
        shape[qp["quantized_dimension"]] = -1
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return ((q - zeros) * scales).astype(np.float32)


def convert(tflite_path: str) -> tuple[dict[str, torch.Tensor], object]:
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=tflite_path)
    interp.allocate_tensors()
    state: dict[str, torch.Tensor] = {}
    for d in interp.get_tensor_details():
        m = WEIGHT_RE.search(d["name"])
        if m and d["dtype"] == np.uint8 and len(d["shape"]) == 4:
            w = dequantise(interp, d)
            idx = layer_index(*m.groups())
            # TFLite conv: (O,H,W,I) -> (O,I,H,W); depthwise: (1,H,W,C) -> (C,1,H,W)
            w = w.transpose(3, 0, 1, 2) if m.group(2) == "depthwise" else w.transpose(0, 3, 1, 2)
            state[f"layers.{idx}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(w))
            continue
        m = BIAS_RE.search(d["name"])
        if m:
            state[f"layers.{layer_index(*m.groups())}.conv.bias"] = torch.from_numpy(dequantise(interp, d))
    return state, interp


def image_paths(folder: Path, n: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    step = max(1, len(files) // n)
    return files[::step][:n]


def fake_quant_activations(net: MobileNetV1, scale: float) -> list:
    """Round every ReLU6 output to the uint8 grid of the TFLite activations (scale 6/255) -- what
    the integer model does between layers. Only for the parity check: the shipped net is float."""
    hook = lambda mod, inp, out: torch.round(out / scale) * scale  # noqa: E731
    return [m.register_forward_hook(hook) for m in net.layers]


def parity(interp, net: MobileNetV1, paths: list[Path]) -> np.ndarray:
    """Per-image cosine between TFLite and PyTorch 1024-d features."""
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    o_scale, o_zero = out["quantization"]
    cos = []
    for p in paths:
        x = np.array(Image.open(p).convert("RGB").resize((224, 224), Image.BICUBIC), dtype=np.uint8)
        interp.set_tensor(inp["index"], x[None])
        interp.invoke()
        ref = (interp.get_tensor(out["index"]).reshape(-1).astype(np.float32) - o_zero) * o_scale
        t = (torch.from_numpy(x).permute(2, 0, 1).float()[None] - 128.0) / 128.0
        with torch.no_grad():
            ours = net(t)[0].numpy()
        cos.append(float(ours @ ref / (np.linalg.norm(ours) * np.linalg.norm(ref) + 1e-12)))
    return np.array(cos)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tflite", required=True,
                    help="mobilenet_v1_1.0_224_quant_embedding_extractor.tflite (google-coral/test_data)")
    ap.add_argument("--images", required=True,
                    help="folder of real images (searched recursively) for the parity check, e.g. mini_sbir/")
    ap.add_argument("--out", required=True, help="output .safetensors (float32 MobileNetV1 state dict)")
    ap.add_argument("--n-check", type=int, default=64, help="images in the parity check")
    ap.add_argument("--min-cosine", type=float, default=0.99, help="fail below this per-image cosine")
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    state, interp = convert(args.tflite)
    net = MobileNetV1().eval()
    net.load_state_dict(state, strict=True)  # every layer found, nothing extra
    paths = image_paths(Path(args.images), args.n_check)
    cos = parity(interp, net, paths)
    print(f"float net vs TFLite on {len(cos)} images: cosine min {cos.min():.4f} mean {cos.mean():.4f}")
    act_scale = interp.get_output_details()[0]["quantization"][0]  # shared by every ReLU6 output
    hooks = fake_quant_activations(net, act_scale)
    cos = parity(interp, net, paths)
    for h in hooks:
        h.remove()
    print(f"same + uint8 activation rounding: cosine min {cos.min():.4f} mean {cos.mean():.4f}")
    if cos.min() < args.min_cosine:
        raise SystemExit(f"parity failed: min cosine {cos.min():.4f} < {args.min_cosine}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, args.out, metadata={"source": Path(args.tflite).name,
                                         "parity_min_cosine": f"{cos.min():.5f}"})
    print(f"wrote {args.out} ({sum(v.numel() for v in state.values())} parameters)")


if __name__ == "__main__":
    main()
